#!/usr/bin/env bash
# The exact commands that made the shipped toy editors (asyrp_edu/weights/editor_*.safetensors), then the manifest.
# Each `asyrp-edu train` takes about two minutes on a 2-core CPU. All five use lr 5e-4: on the shipped 24,000-step
# DDPM the smiling editor reaches 98% of faces at 5e-4 and leaks more into the other attributes at 2e-3. The training
# faces are inverted with 2 fixed-point iterations per step (README, "Why the inversion iterates").
set -euo pipefail
cd "$(dirname "$0")/.."
for edit in smiling glasses tanned blonde alien; do
  asyrp-edu train --world toy --edit "$edit" --n-images 32 --epochs 3 --t-edit 400 --lr 5e-4 --inversion-iters 2 --seed 0 \
    --no-resume --out "runs/editors/$edit"
  cp "runs/editors/$edit/editor.safetensors" "asyrp_edu/weights/editor_$edit.safetensors"
done
python -m asyrp_edu.manifest
