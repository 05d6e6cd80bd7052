"""Does a toy DDPM trained on a broader world keep green faces? Train one, then measure it as alien_prior.py does.

The shipped toy DDPM erases rendered aliens (`alien_prior.py`). CelebA-HQ shows green clothes and backgrounds, never
a green face, yet the paper's DDPMs reach green "zombie" faces. This broad world gives the toy faces colour the same
way: half of them have hair dyed any hue (green too), half have skin tinted up to 80% towards any hue at least
GREEN_GAP (79°) away from green. No face is green.

Usage:
    python scripts/alien_broad_world.py train --out runs/toy_ddpm_broad --steps 6000 --batch-size 128 --device cuda
    python scripts/alien_broad_world.py export --out runs/toy_ddpm_broad   # EMA of the last checkpoint, if cut short
    python scripts/alien_broad_world.py measure --out runs/toy_ddpm_broad

The README's model is the first command on one H100, cut by the time limit after about 6 minutes; `export` then
took the step-4,500 checkpoint. Training is resumable. On 2 CPU cores the same command takes hours (`--device cpu`).
`measure` prints the share of an alien's greenness left after noising to t and denoising, next to the shipped
DDPM's (about a minute).
Editors on it: `asyrp-edu train --world toy --ddpm FILE ...`, `python scripts/alien_oracle.py --ddpm FILE`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from alien_prior import denoise_from
from asyrp_edu import toy
from asyrp_edu.checks import load_training_state
from asyrp_edu.cli_editors import non_negative_float, positive_float, positive_int
from asyrp_edu.evaluate_edits import greenness
from asyrp_edu.models import TOY_UNET_CONFIG, build_unet, load_shipped_unet, load_toy_ddpm
from asyrp_edu.train_ddpm import STATE_FILE, export_ema, train_ddpm

WEIGHTS = "toy_ddpm_broad.safetensors"
GREEN_HUE, GREEN_GAP = 0.32, 0.22  # the alien's hue; skin tints stay this far from it on the hue circle
DARK_HAIR, BLONDE_HAIR = torch.tensor(toy.DARK_HAIR), torch.tensor(toy.BLONDE_HAIR)
PALE_SKIN, TANNED_SKIN = torch.tensor(toy.PALE_SKIN), torch.tensor(toy.TANNED_SKIN)
START_TIMESTEPS = (100, 200, 300, 400, 500, 600)


def broad_colours(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Per face: hair dye (0/1) and hue, skin tint (0 or up to 0.8) and its hue, never near green: {name: (n,)}."""
    g = torch.Generator().manual_seed(seed + 7_919)
    dye, hair_hue = (torch.rand(n, generator=g) < 0.5).float(), torch.rand(n, generator=g)
    tint = 0.8 * torch.rand(n, generator=g) * (torch.rand(n, generator=g) < 0.5).float()
    # hues on the circle minus the arc of width 2·GREEN_GAP around green
    tint_hue = (GREEN_HUE + GREEN_GAP + torch.rand(n, generator=g) * (1 - 2 * GREEN_GAP)) % 1.0
    return {"dye": dye, "hair_hue": hair_hue, "tint": tint, "tint_hue": tint_hue}


def render_broad(n: int, seed: int) -> torch.Tensor:
    """Faces of the broad world (n, 3, 32, 32) in [-1, 1].

    toy.render paints colours over each other, so every pixel is affine in the hair colour and in the skin colour:
    pixel = a + b·colour. Two renders give b (where and how much of that colour shows); the recolouring follows."""
    attrs = toy.sample_attributes(n, seed=seed)
    colours = broad_colours(n, seed)
    image = (toy.render(attrs) + 1) / 2  # (n, 3, 32, 32) in [0, 1]
    hair = DARK_HAIR + (BLONDE_HAIR - DARK_HAIR) * attrs["hair_color"][:, None]  # (n, 3)
    skin = PALE_SKIN + (TANNED_SKIN - PALE_SKIN) * attrs["skin_tone"][:, None]
    hair_shows = (toy.render({**attrs, "hair_color": 1.0}) - toy.render({**attrs, "hair_color": 0.0})) / 2 \
        / (BLONDE_HAIR - DARK_HAIR).view(1, 3, 1, 1)
    skin_shows = (toy.render({**attrs, "skin_tone": 1.0}) - toy.render({**attrs, "skin_tone": 0.0})) / 2 \
        / (TANNED_SKIN - PALE_SKIN).view(1, 3, 1, 1)
    # dyed hair: hair + dye·(hue colour − hair); tinted skin: skin + tint·(hue colour − skin)
    new_hair = hair.view(n, 3, 1, 1) + colours["dye"].view(n, 1, 1, 1) * (
        toy.hue_to_rgb(colours["hair_hue"], 0.7, 0.85) - hair.view(n, 3, 1, 1))
    new_skin = skin.view(n, 3, 1, 1) + colours["tint"].view(n, 1, 1, 1) * (
        toy.hue_to_rgb(colours["tint_hue"], 0.65, 0.85) - skin.view(n, 3, 1, 1))
    image = image + hair_shows * (new_hair - hair.view(n, 3, 1, 1)) + skin_shows * (new_skin - skin.view(n, 3, 1, 1))
    return (image * 2 - 1).clamp(-1, 1)


def measure(weights: Path, n: int = 64) -> None:
    """Print the share of rendered aliens' greenness left after noising to t and 40-step DDIM back, for the broad
    DDPM and the shipped one side by side."""
    models = {"broad": load_shipped_unet(weights, WEIGHTS, "python scripts/alien_broad_world.py train"),
              "shipped": load_toy_ddpm()}
    attrs = toy.sample_attributes(n, seed=0, heldout=True)
    human, alien = toy.render(attrs), toy.render({**attrs, "alien": 1.0})
    base, full = float(greenness(human).mean()), float(greenness(alien).mean())
    for t_start in START_TIMESTEPS:
        kept = {}
        for name, (unet, schedule) in models.items():
            torch.manual_seed(t_start)  # the same noise for both models
            kept[name] = (float(greenness(denoise_from(unet, schedule, alien, t_start)).mean()) - base) / (full - base)
        print(f"denoised from t = {t_start}: alien greenness left {kept['broad']:.0%} (broad world), "
              f"{kept['shipped']:.0%} (shipped DDPM)")


def main() -> None:
    """train / export / measure, as the module docstring says."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("train", "export", "measure"))
    p.add_argument("--out", type=Path, default=Path("runs/toy_ddpm_broad"))
    p.add_argument("--steps", type=positive_int, default=6000)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=8e-4)
    p.add_argument("--coarse-weight", type=non_negative_float, default=0.1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.command == "train":
        result = train_ddpm(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            device=args.device, coarse_weight=args.coarse_weight, draw=render_broad,
                            weights_file=WEIGHTS, metadata={"world": "broad (scripts/alien_broad_world.py)"})
        print(f"EMA weights after {result.step} steps: {result.weights}")
    elif args.command == "export":
        state = load_training_state(args.out / STATE_FILE, ("ema", "step"))
        unet = build_unet(TOY_UNET_CONFIG)
        unet.load_state_dict(state["ema"])
        export_ema(unet, args.out / WEIGHTS, TOY_UNET_CONFIG, seed=args.seed, steps=int(state["step"]),
                   world="broad (scripts/alien_broad_world.py)")
        print(f"EMA weights of step {int(state['step'])}: {args.out / WEIGHTS}")
    else:
        measure(args.out / WEIGHTS)


if __name__ == "__main__":
    main()
