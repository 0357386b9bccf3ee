#!/bin/sh
# Point the base image's apt sources at the inventory's image.apt_mirror (genai-workstation).
# Usage: apt-mirror.sh [MIRROR_URL]; empty: the sources stay as they are. The Debian and Ubuntu
# archive hosts become MIRROR_URL/ (the mirror then serves /debian, /debian-security, /ubuntu).
set -eu
mirror="${1:-}"
[ -n "${mirror}" ] || exit 0
for list in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
  if [ -f "${list}" ]; then
    sed -Ei "s#https?://(deb|security)\.debian\.org/#${mirror%/}/#g; \
s#https?://(archive|security)\.ubuntu\.com/#${mirror%/}/#g" "${list}"
  fi
done
