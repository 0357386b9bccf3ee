"""The workstation step's WSL2 branch on pyinfra's `@fake` connector, from recorded outputs.

No WSL here: the facts' commands are answered with real outputs of a WSL2 Ubuntu machine
(tests/workstation_fake.py), and the test asserts the exact commands each operation ran.
"""

from __future__ import annotations

import pytest
from pyinfra.api import OperationError

from genai_workstation.deploys.steps.verify import verify_host
from genai_workstation.deploys.steps.workstation import workstation
from genai_workstation.facts.packages import NVIDIA_WSL_REASON
from tests.workstation_fake import path_states, run_fake, workspace_paths, wsl_responses

MERGED_WSL_CONF = (
    "# written by the user\n"
    "[automount]\n"
    'options = "metadata,umask=22,fmask=11"\n'
    "\n"
    "[network]\n"
    "generateResolvConf = false\n"
    "\n"
    "[boot]\n"
    "systemd=true\n"
)
INSTALL_WORKSPACE = "install -d -o 1000 -g 1000 -m 755 " + " ".join(workspace_paths())
NEW_USER = [
    "groupadd genai --gid 1000",
    "groupadd -r docker",
    "useradd -d /home/genai -s /bin/bash -g genai -G docker --uid 1000 -m genai",
    "mkdir -p /home/genai",
    "chown genai:genai /home/genai",
]


def ran_commands(ran):
    return [command for _name, commands in ran for command in commands]


def test_docker_desktop_branch_installs_nothing_and_merges_wsl_conf(tmp_path, caplog):
    caplog.set_level("INFO")
    _state, host, ran = run_fake(tmp_path, wsl_responses(), docker={"source": "desktop"})
    assert ran == [
        ("Workstation | Platform is auto", []),
        ("Workstation | No Linux NVIDIA driver inside WSL2", []),
        ("Workstation | GPUs expected by the inventory", []),
        ("Workstation | Docker Desktop provides Docker", []),
        ("Workstation | Workspace /srv/genai", [INSTALL_WORKSPACE]),
        ("Workstation | /etc/wsl.conf [boot] systemd=true", [
            'if [ -e /etc/wsl.conf ]; then cp -p /etc/wsl.conf '
            '/etc/wsl.conf.bak-"$(date +%Y%m%d-%H%M%S)" ; fi',
            # atomic: temp file in /etc, owner and mode set, then renamed
            "rm -f /etc/.wsl.conf.genai-tmp && ( umask 077 && : > /etc/.wsl.conf.genai-tmp )",
            ["upload", MERGED_WSL_CONF, "/etc/.wsl.conf.genai-tmp"],
            "chown root:root /etc/.wsl.conf.genai-tmp",
            "chmod 644 /etc/.wsl.conf.genai-tmp",
            "mv -f /etc/.wsl.conf.genai-tmp /etc/wsl.conf",
        ]),
        ("Workstation | User genai (1000:1000) in group docker", NEW_USER),
        ("Workstation | wsl.exe --shutdown needed", [["call", "_wsl_shutdown_notice"]]),
    ]
    executed = " ; ".join(host.connector.executed_commands)
    for never in ("apt-get", "nvidia-ctk", "docker.io", "service docker", "systemctl"):
        assert never not in executed
    assert "ACTION NEEDED" in caplog.text and "wsl.exe --shutdown" in caplog.text
    assert "NVIDIA runtime comes from Docker Desktop" in caplog.text


def test_a_longer_run_repeats_the_shutdown_notice_before_its_checks(tmp_path, caplog):
    """comfyui.py, forge.py, site.py end with the verify step: the notice comes again there,
    after the models and stacks output, so that it is not scrolled away."""
    caplog.set_level("INFO")
    _state, _host, ran = run_fake(tmp_path, wsl_responses(), docker={"source": "desktop"},
                                  steps=[workstation, verify_host])
    names = [name for name, _ in ran]
    assert names[-2:] == ["Verify | wsl.exe --shutdown needed (reminder)",
                          "Verify | Verify workstation"]
    assert names.index("Workstation | wsl.exe --shutdown needed") < len(names) - 2
    assert caplog.text.count("ACTION NEEDED") == 2


def test_wsl_conf_already_set_plans_no_change_and_no_notice(tmp_path, caplog):
    conf = ["@@genai:wsl.conf present", "[boot]", "systemd = true", "[automount]",
            "enabled = true"]
    responses = wsl_responses(**{"@@genai:wsl.conf": conf})
    _state, _host, ran = run_fake(tmp_path, responses, docker={"source": "desktop"},
                                  steps=[workstation, verify_host])
    names = [name for name, _ in ran]
    assert "Verify | wsl.exe --shutdown needed (reminder)" not in names
    assert ("Workstation | /etc/wsl.conf [boot] systemd=true", []) in ran
    assert "Workstation | wsl.exe --shutdown needed" not in names
    assert "ACTION NEEDED" not in caplog.text


def test_wsl_systemd_false_leaves_wsl_conf_alone(tmp_path):
    _state, _host, ran = run_fake(tmp_path, wsl_responses(), docker={"source": "desktop"},
                                  wsl={"systemd": False})
    assert not any("wsl.conf" in name for name, _ in ran)


def _refused(tmp_path, responses, **settings) -> tuple[str, list[str]]:
    """Run, expect an OperationError while preparing; return it and what was executed."""
    from tests import workstation_fake

    with pytest.raises(OperationError) as error:
        run_fake(tmp_path, responses, **settings)
    return str(error.value), workstation_fake.LAST_EXECUTED


@pytest.mark.parametrize("packages", [["cuda-drivers"], ["nvidia-driver-550", "cuda-12-4"]])
def test_linux_nvidia_driver_inside_wsl_fails_with_nvidias_reason(tmp_path, packages):
    listing = [f"{name} install ok installed" for name in packages]
    message, executed = _refused(tmp_path, wsl_responses(**{"dpkg-query -W -f": listing}),
                                 docker={"source": "desktop"})
    assert message.startswith("Linux NVIDIA driver packages installed inside WSL2: "
                              + ", ".join(sorted(packages)))
    assert NVIDIA_WSL_REASON in message
    assert f"apt-get purge {' '.join(sorted(packages))}" in message
    assert_nothing_changed(executed)


def assert_nothing_changed(executed: list[str]) -> None:
    """Only the facts' read-only commands ran."""
    for command in executed:
        for verb in ("install -d", "useradd", "groupadd", "apt-get", "cp -p", "chmod", "mv "):
            assert verb not in command, command


def test_wsl1_is_refused_with_the_reason(tmp_path):
    platform = [line.replace("5.15.133.1-microsoft-standard-WSL2", "4.4.0-19041-Microsoft")
                for line in wsl_responses()["uname -r"]]
    message, executed = _refused(tmp_path, wsl_responses(**{"uname -r": platform}),
                                 docker={"source": "desktop"})
    assert "this is WSL1 (kernel 4.4.0-19041-Microsoft)" in message
    assert "wsl.exe --set-version <distro> 2" in message
    assert_nothing_changed(executed)


def test_platform_setting_must_agree_with_the_host(tmp_path):
    message, executed = _refused(tmp_path, wsl_responses(), platform="linux",
                                 docker={"source": "desktop"})
    assert "the inventory says `platform: linux` but this host is WSL2" in message
    assert_nothing_changed(executed)


def test_unknown_expected_gpu_lists_the_gpus_found(tmp_path):
    message, executed = _refused(tmp_path, wsl_responses(), docker={"source": "desktop"},
                                 gpu={"mode": "nvidia", "expected": ["RTX 3090"]})
    assert "RTX 3090" in message
    assert message.startswith("gpu.expected: GPU 'RTX 3090'")
    assert ("GPUs found: index 0: NVIDIA GeForce RTX 4070 "
            "(GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02)") in message
    assert_nothing_changed(executed)


def test_expected_gpu_by_name_index_or_uuid_passes(tmp_path):
    _state, _host, ran = run_fake(
        tmp_path, wsl_responses(), docker={"source": "desktop"},
        gpu={"mode": "nvidia",
             "expected": ["RTX 4070", 0, "GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02"]})
    assert ("Workstation | GPUs expected by the inventory", []) in ran


def test_dangling_docker_desktop_link_is_refused(tmp_path):
    cli = ["path=/usr/bin/docker", "target=/mnt/wsl/docker-desktop/cli-tools/usr/bin/docker",
           "dangling=1"]
    message, executed = _refused(tmp_path, wsl_responses(**{"compose version --short": cli}),
                                 docker={"source": "desktop"})
    assert "/usr/bin/docker is a link to /mnt/wsl/docker-desktop/cli-tools/usr/bin/docker, " \
           "which does not exist" in message
    assert_nothing_changed(executed)


def test_workspace_on_windows_drive_is_refused_before_anything(tmp_path):
    # The loader already refuses /mnt/<drive> paths; a drive mounted elsewhere (here C:\ on
    # /data, over 9p) is only visible to the PathStates fact.
    paths = workspace_paths("/data/genai")
    responses = wsl_responses(**{"@@path": path_states(paths, "9p", "/data")})
    message, executed = _refused(tmp_path, responses, docker={"source": "desktop"},
                                 workspace="/data/genai")
    assert message.startswith("workspace refused, nothing created: /data/genai is on a "
                              "Windows drive: /data is 9p (DrvFs)")
    assert_nothing_changed(executed)


def test_gpu_mode_none_skips_gpu_checks_visibly(tmp_path, caplog):
    _state, _host, ran = run_fake(tmp_path, wsl_responses(**{"--query-gpu=": ["smi="]}),
                                  docker={"source": "desktop"}, gpu={"mode": "none"})
    names = [name for name, _ in ran]
    assert "Workstation | GPUs expected by the inventory" not in names
    assert "GPU checks and the NVIDIA container toolkit are skipped" in caplog.text


def test_uid_of_the_wsl_users_own_account_is_refused_with_the_fix(tmp_path):
    # getent as answered on a WSL Ubuntu whose first user (uid 1000) is alice
    account = ["@@genai:account", "@@uid alice:x:1000:1000:,,,:/home/alice:/bin/bash"]
    message, executed = _refused(tmp_path, wsl_responses(**{"@@genai:account": account}),
                                 docker={"source": "desktop"})
    assert message == ("uid 1000 already belongs to user 'alice': set `user.name: alice` to use "
                       "that account as the workstation user, or choose a free `user.uid`")
    assert_nothing_changed(executed)


def test_the_wsl_users_own_account_joins_docker(tmp_path):
    account = ["@@genai:account",
               "@@user alice:x:1000:1000:,,,:/home/alice:/bin/bash",
               "@@uid alice:x:1000:1000:,,,:/home/alice:/bin/bash",
               "@@group alice:x:1000:",
               "@@primary alice",
               "@@groups alice adm sudo"]
    responses = wsl_responses(**{"@@genai:account": account})
    _state, _host, ran = run_fake(tmp_path, responses, docker={"source": "desktop"},
                                  user={"name": "alice", "uid": 1000, "gid": 1000})
    commands = dict(ran)["Workstation | User alice (1000:1000) in group docker"]
    # no uid change, no useradd: the docker group is created and alice joins it
    assert commands == ["groupadd -r docker", "usermod -a -G docker alice"]
