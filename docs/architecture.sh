#!/usr/bin/env bash
# Regenerate docs/architecture.svg from docs/architecture.dot with Graphviz
# (apt-get install graphviz). The SVG records the sha256 of the source it was made from.
#     bash docs/architecture.sh [OUTPUT]      # default: docs/architecture.svg
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-architecture.svg}"
hash=$(sha256sum architecture.dot | cut -d' ' -f1)
dot -Tsvg architecture.dot \
    | sed "0,/^<svg /s||<!-- source: architecture.dot sha256 $hash -->\n<svg |" >"$out.part"
mv "$out.part" "$out"
