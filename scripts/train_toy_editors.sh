#!/usr/bin/env bash
# The exact commands that made the shipped toy editors (asyrp_edu/weights/editor_*.safetensors), then the manifest.
# Each `asyrp-edu train` takes about a minute and a half on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
for edit in smiling glasses tanned blonde alien; do
  asyrp-edu train --world toy --edit "$edit" --n-images 32 --epochs 3 --t-edit 400 --seed 0 --no-resume \
    --out "runs/editors/$edit"
  cp "runs/editors/$edit/editor.safetensors" "asyrp_edu/weights/editor_$edit.safetensors"
done
python -m asyrp_edu.manifest
