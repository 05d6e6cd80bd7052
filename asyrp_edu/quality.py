"""Measured quality of the toy DDPM: attribute marginals of its samples and inversion/reconstruction error."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from . import toy
from .ddim import INVERSION_FIXED_POINT_ITERS, Schedule, ddim_generate, ddim_invert, unet_noise_model


@torch.no_grad()
def sample_from_noise(unet, schedule: Schedule, n: int, num_steps: int = 50, seed: int = 0,
                      batch_size: int = 128, progress: bool = True, codec=None) -> torch.Tensor:
    """n DDIM samples (n, 3, H, W) from pure noise, deterministic from seed: x0 clipped for a pixel model; for a latent
    model (codec given) the latents stay unclipped and are decoded."""
    g = torch.Generator().manual_seed(seed)
    size, weights = unet.config.sample_size, next(unet.parameters())  # x_T in the U-Net's device and dtype
    out = []
    for start in tqdm(range(0, n, batch_size), desc="sampling", disable=not progress):
        x_T = torch.randn(min(batch_size, n - start), unet.config.in_channels, size, size, generator=g)
        x0 = ddim_generate(unet_noise_model(unet), x_T.to(weights), schedule, num_steps, clip_x0=codec is None,
                           progress=False)
        out.append((x0 if codec is None else codec.decode(x0).clamp(-1, 1)).cpu())
    return torch.cat(out)


def sample_marginals(unet, schedule: Schedule, evaluator, n: int = 512, num_steps: int = 50, seed: int = 0,
                     progress: bool = True, codec=None) -> dict[str, dict[str, float]]:
    """Per attribute: the generator's true mean/std and the judge's mean/std on n model samples (decoded by codec
    for a latent model)."""
    samples = sample_from_noise(unet, schedule, n, num_steps, seed=seed, progress=progress, codec=codec)
    judged = evaluator(samples)
    truth = toy.sample_attributes(8192, seed=seed + 1)
    report = {}
    for k in toy.ATTRIBUTES:
        report[k] = {"generator_mean": float(truth[k].mean()), "generator_std": float(truth[k].std()),
                     "model_mean": float(judged[k].mean()), "model_std": float(judged[k].std())}
        report[k]["max_gap"] = max(abs(report[k]["model_mean"] - report[k]["generator_mean"]),
                                   abs(report[k]["model_std"] - report[k]["generator_std"]))
    return report


@torch.no_grad()
def invert_and_reconstruct(unet, schedule: Schedule, x0: torch.Tensor, num_steps: int = 40,
                           progress: bool = True, fixed_point_iters: int = INVERSION_FIXED_POINT_ITERS
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM inversion x0 -> x_T (as the package inverts for editing; fixed_point_iters=0: plain) and the unclipped
    reconstruction x_T -> x0: returns (x_T, reconstruction)."""
    model = unet_noise_model(unet)
    x_T = ddim_invert(model, x0, schedule, num_steps, progress=progress, fixed_point_iters=fixed_point_iters)
    return x_T, ddim_generate(model, x_T, schedule, num_steps, clip_x0=False, progress=progress)


def reconstruction_mse(unet, schedule: Schedule, n: int = 64, num_steps: int = 40, seed: int = 0,
                       progress: bool = True, fixed_point_iters: int = INVERSION_FIXED_POINT_ITERS) -> float:
    """Mean squared error of DDIM inversion + reconstruction on n held-out generator images in [-1, 1]."""
    x0, _ = toy.sample(n, seed=seed, heldout=True, size=unet.config.sample_size)
    device = next(unet.parameters()).device
    _, rec = invert_and_reconstruct(unet, schedule, x0.to(device), num_steps, progress, fixed_point_iters)
    return float((rec.cpu() - x0).pow(2).mean())
