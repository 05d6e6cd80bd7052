#!/usr/bin/env bash
# The exact commands that made the shipped toy editors (asyrp_edu/weights/editor_*.safetensors), then the manifest.
# Each `asyrp-edu train` takes one to two minutes on a 2-core CPU. The training faces are inverted with 2 fixed-point
# iterations per step (README, "Why the inversion iterates").
# - alien: the paper's loss at lr 5e-4 with ΔI and L1 both against x0 (`--reference x0-both`, the default when it
#   was trained; on the shipped 24,000-step DDPM the paper's smiling editor reaches 98% of faces at 5e-4 and leaks
#   more at 2e-3).
# - smiling, glasses, tanned and blonde: the paper's loss plus the keep loss on the other attributes, with the L1
#   term against the unedited trajectory (README, "Where the smiling editor loses the glasses"). Glasses flip on 9% of
#   the held-out faces under smiling (6 of 64; the bar is 10%) instead of 47% with the paper's loss alone; the
#   largest leakage of glasses falls from 0.25 to 0.14, of tanned from 0.42 to 0.13 and of blonde from 0.30 to 0.07.
# - smiling trains at lr 8e-4 for 4 epochs (the others: 1e-3 for 3). At 1e-3 for 3 epochs seeds 0 and 1 both flipped
#   the glasses on 11% of the faces; at 8e-4 for 4 epochs seeds 0 and 2 meet every bar and seed 1 leaks 0.155 into
#   skin tone (README, "Known shortfalls").
# - tanned: the glasses flips depend on the seed (9% for seed 0, 39% and 42% for seeds 1 and 2); editing only
#   t >= 550 keeps them under 10% on all three seeds but costs smiling in the smiling + glasses + tanned mix (README).
set -euo pipefail
cd "$(dirname "$0")/.."
ship() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }  # copy into the package whole or not at all
declare -A extra=(
  [smiling]="--epochs 4 --lr 8e-4 --reference trajectory --keep others --lambda-keep 3 --lambda-recon 6"
  [blonde]="--epochs 3 --lr 1e-3 --reference trajectory --keep others --lambda-keep 1 --lambda-recon 3"
  [glasses]="--epochs 3 --lr 1e-3 --reference trajectory --keep others --lambda-keep 3 --lambda-recon 6"
  [tanned]="--epochs 3 --lr 1e-3 --reference trajectory --keep others --lambda-keep 1 --lambda-recon 3"
  [alien]="--epochs 3 --lr 5e-4 --reference x0-both"
)
for edit in smiling glasses tanned blonde alien; do
  # shellcheck disable=SC2086  # the extra arguments are meant to split
  asyrp-edu train --world toy --edit "$edit" --n-images 32 --t-edit 400 --inversion-iters 2 --seed 0 \
    ${extra[$edit]} --no-resume --out "runs/editors/$edit"
  ship "runs/editors/$edit/editor.safetensors" "asyrp_edu/weights/editor_$edit.safetensors"
done
python -m asyrp_edu.manifest
