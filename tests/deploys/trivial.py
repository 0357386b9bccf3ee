"""A trivial deploy for harness tests: a group, a user, a workspace folder and a file in it."""

from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server

workspace = host.data.get("workspace")
user = host.data.get("user")

server.group(name="Workstation group", group=user["name"], gid=user["gid"])
server.user(
    name="Workstation user",
    user=user["name"],
    uid=user["uid"],
    group=user["name"],
    home=f"/home/{user['name']}",
    create_home=True,
    shell="/bin/bash",
)
files.directory(
    name="Workspace folder",
    path=workspace,
    user=user["name"],
    group=user["name"],
    mode="755",
)
files.put(
    name="Marker file",
    src=StringIO(f"genai-workstation harness test on {host.data.get('workstation_name')}\n"),
    dest=f"{workspace}/marker.txt",
    user=user["name"],
    group=user["name"],
    mode="644",
)
