#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian/Ubuntu machine (run as root), then the
# project with its test extra into .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    openssh-server openssh-client   # sshd inside the fresh test hosts; ssh-keygen
    debootstrap                     # fresh Debian test hosts
    docker.io                       # a real Docker engine for the stack tests
    apt-utils gnupg                 # the signed stand-in NVIDIA apt repository
    iproute2 util-linux             # network namespaces, unshare, nsenter
    curl                            # the download benchmark's baseline
    caddy                           # the auth proxy config is checked by a real Caddy
    vagrant                         # `vagrant validate` of the rehearsal Vagrantfile
    vagrant-libvirt                 # its libvirt provider checks (no hypervisor needed)
    graphviz                        # docs/architecture.svg re-rendered from its source
)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
