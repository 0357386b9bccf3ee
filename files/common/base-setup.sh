#!/bin/sh
# The first layer of every app image genai-workstation builds: apt sources on the inventory's
# image.apt_mirror, the system packages, and the venv with a current pip (pip's settings in
# /etc/pip.conf: no cache in the image, no version check).
# Usage: base-setup.sh APT_MIRROR [EXTRA_APT_PACKAGE...] (an empty APT_MIRROR keeps the sources)
set -eu
mirror="$1"
shift
sh "$(dirname "$0")/apt-mirror.sh" "${mirror}"
apt-get update
apt-get install -y --no-install-recommends \
  ca-certificates git python3 python3-venv python3-dev libgl1 libglib2.0-0 "$@"
rm -rf /var/lib/apt/lists/*
git config --system --add safe.directory '*'
printf '[global]\nno-cache-dir = true\ndisable-pip-version-check = true\n' > /etc/pip.conf
python3 -m venv /opt/venv
/opt/venv/bin/pip install --upgrade pip
