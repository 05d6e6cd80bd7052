#!/usr/bin/env bash
# The exact commands that made the shipped toy LDM (asyrp_edu/weights/toy_vae, toy_ldm, ldm_editor_smiling).
# Autoencoder 12 min, latent U-Net about 75 min, editor 35 s on a 2-core CPU; the two trainings resume if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
ship() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }  # copy into the package whole or not at all
VAE_STEPS=${VAE_STEPS:-3000}
asyrp-edu train-vae --out runs/toy_vae --steps "$VAE_STEPS" --seed 0
ship runs/toy_vae/toy_vae.safetensors asyrp_edu/weights/toy_vae.safetensors
python -m asyrp_edu.manifest >/dev/null  # the latent U-Net encodes with the shipped (sha256-checked) autoencoder
# The shipped latent U-Net grew in three runs, each resuming the last one's state: 12,000 steps, on to 18,000, then on
# to 24,000 at a lower rate. The learning rate follows a cosine over each run's --steps, so a resumed run with more
# steps raises it again from where the previous run had lowered it.
asyrp-edu train-ddpm --world toy-ldm --out runs/toy_ldm --steps 12000 --seed 0
asyrp-edu train-ddpm --world toy-ldm --out runs/toy_ldm --steps 18000 --seed 0
asyrp-edu train-ddpm --world toy-ldm --out runs/toy_ldm --steps 24000 --lr 2e-4 --seed 0
ship runs/toy_ldm/toy_ldm.safetensors asyrp_edu/weights/toy_ldm.safetensors
python -m asyrp_edu.manifest >/dev/null
asyrp-edu train --world toy-ldm --edit smiling --n-images 32 --epochs 3 --t-edit 400 --lr 2.5e-4 --reference x0-both \
  --seed 0 --no-resume \
  --out runs/ldm_editors/smiling
ship runs/ldm_editors/smiling/editor.safetensors asyrp_edu/weights/ldm_editor_smiling.safetensors
python -m asyrp_edu.manifest
