"""Does the frozen toy DDPM keep a green face at all? Rendered aliens, noised to t and denoised with DDIM (SDEdit).

Asyrp edits only in [T, t_edit]; below t_edit the frozen DDPM denoises on its own. An unseen domain can only survive
that if the model's prior carries it. This prints how much of a rendered alien's greenness is left after noising to t
(the forward process q(x_t | x_0)) and 40-step deterministic DDIM back to t = 0, and the same for a seen attribute
pushed past its training range (skin_tone 1.6), for comparison; and what the toy LDM's autoencoder makes of an alien
(encode, decode). About 30 seconds on 2 cores.

Usage: python scripts/alien_prior.py [--n 32]
"""
from __future__ import annotations

import argparse

import torch

from asyrp_edu import toy
from asyrp_edu.cli_editors import positive_int
from asyrp_edu.ddim import ddim_step, q_sample, unet_noise_model
from asyrp_edu.evaluate_edits import greenness
from asyrp_edu.evaluator import load_evaluator
from asyrp_edu.ldm import load_toy_ldm
from asyrp_edu.models import load_toy_ddpm

START_TIMESTEPS = (100, 200, 300, 400, 600)


@torch.no_grad()
def denoise_from(unet, schedule, images: torch.Tensor, t_start: int, num_steps: int = 40) -> torch.Tensor:
    """x_0 → x_{t_start} by the forward process, then deterministic DDIM back to x_0: (B, 3, H, W) in [-1, 1]."""
    noise_model = unet_noise_model(unet)
    # x_t = sqrt(alpha_bar_t) · x_0 + sqrt(1 − alpha_bar_t) · ε
    x = q_sample(images, torch.full((len(images),), t_start), torch.randn_like(images), schedule)
    grid = schedule.timesteps(num_steps)
    for i, t in enumerate(grid):
        if t <= t_start:
            eps = noise_model(x, torch.full((len(x),), t))
            x = ddim_step(x, eps, eps, t, schedule.previous(grid, i), schedule).prev_sample
    return x.clamp(-1, 1)


def main() -> None:
    """Print the greenness (and tanned skin) left after denoising from each start timestep."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=positive_int, default=32, help="held-out faces")
    args = p.parse_args()
    torch.manual_seed(0)
    unet, schedule = load_toy_ddpm()
    judge = load_evaluator()
    attrs = toy.sample_attributes(args.n, seed=0, heldout=True)
    human, alien = toy.render(attrs), toy.render({**attrs, "alien": 1.0})
    past_range = toy.render({**attrs, "skin_tone": torch.full((args.n,), 1.6)})
    base, full = float(greenness(human).mean()), float(greenness(alien).mean())
    print(f"greenness: human faces {base:+.2f}, rendered aliens {full:+.2f}; "
          f"judged skin_tone of faces rendered at 1.6: {float(judge(past_range)['skin_tone'].mean()):.2f}")
    for t_start in START_TIMESTEPS:
        kept = (float(greenness(denoise_from(unet, schedule, alien, t_start)).mean()) - base) / (full - base)
        skin = float(judge(denoise_from(unet, schedule, past_range, t_start))["skin_tone"].mean())
        print(f"denoised from t = {t_start}: {kept:.0%} of the alien greenness left; "
              f"skin_tone 1.6 comes back at {skin:.2f}")

    codec = load_toy_ldm().codec
    with torch.no_grad():
        decoded = codec.decode(codec.encode(alien)).clamp(-1, 1)  # D(E(x)): what the toy LDM can represent at all
    print(f"toy LDM autoencoder: rendered aliens come back with greenness {float(greenness(decoded).mean()):+.2f}")


if __name__ == "__main__":
    main()
