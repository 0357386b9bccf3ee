"""One cheap read of the workstation account: the user, who holds its uid, and its groups."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class Account(FactBase):
    """
    Returns the user ``name``, the user holding ``uid`` and the groups ``groups`` in one
    round trip (``getent`` and ``id``; pyinfra's ``Users`` fact runs ``lastlog`` and greps
    for every account on the host).

    .. code:: python

        {
            "user": {  # None when there is no user `name`
                "name": "genai",
                "uid": 1000,
                "gid": 1000,
                "group": "genai",  # primary group's name
                "groups": ["genai", "docker"],  # every group it is in
                "home": "/home/genai",
                "shell": "/bin/bash",
            },
            "uid_owner": "genai",  # user holding `uid`, or None
            "groups": {"genai": 1000, "docker": 998},  # the asked groups that exist
        }
    """

    @staticmethod
    def default():
        return {"user": None, "uid_owner": None, "groups": {}}

    def command(self, username: str, uid: int, groups: list[str] | None = None) -> str:
        quoted = shlex.quote(str(username))
        names = " ".join(shlex.quote(str(g)) for g in dict.fromkeys([username, *(groups or [])]))
        return (
            "echo '@@genai:account'; "
            f"getent passwd {quoted} | sed 's/^/@@user /'; "
            f"getent passwd {shlex.quote(str(uid))} | sed 's/^/@@uid /'; "
            f"for g in {names}; do getent group \"$g\" | sed 's/^/@@group /'; done; "
            f"if id {quoted} >/dev/null 2>&1; then "
            f"printf '@@primary %s\\n' \"$(id -gn {quoted})\"; "
            f"printf '@@groups %s\\n' \"$(id -Gn {quoted})\"; fi; true"
        )

    def process(self, output: list[str]):
        data = self.default()
        user = None
        for line in output:
            key, _, rest = line.partition(" ")
            fields = rest.split(":")
            if key == "@@user" and len(fields) >= 7:
                user = {
                    "name": fields[0],
                    "uid": int(fields[2]) if fields[2].isdigit() else fields[2],
                    "gid": int(fields[3]) if fields[3].isdigit() else fields[3],
                    "group": None,
                    "groups": [],
                    "home": fields[5],
                    "shell": fields[6],
                }
            elif key == "@@uid" and fields[0]:
                data["uid_owner"] = fields[0]
            elif key == "@@group" and len(fields) >= 3:
                data["groups"][fields[0]] = int(fields[2]) if fields[2].isdigit() else fields[2]
            elif key == "@@primary" and user is not None:
                user["group"] = rest.strip() or None
            elif key == "@@groups" and user is not None:
                user["groups"] = rest.split()
        data["user"] = user
        return data
