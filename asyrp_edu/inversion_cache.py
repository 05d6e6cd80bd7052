"""DDIM inversions cached on disk, keyed by everything x_T depends on (model, images, schedule, steps, iterations)."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .ddim import Schedule, ddim_invert, unet_noise_model
from .models import save_safetensors_atomic
from .shipped_cache import shipped_inversion

if TYPE_CHECKING:
    from .autoencoder import LatentCodec


def unet_fingerprint(unet) -> str:
    """A short hash of a U-Net's weights, which tells models of the same shape apart: the model an editor was
    trained on, or a cached inversion was made with. It reads the first 1,024 values of every tensor as float32."""
    key = hashlib.sha256()
    for p in unet.state_dict().values():
        key.update(p.detach().flatten()[:1024].float().cpu().numpy().tobytes())
    return key.hexdigest()[:16]


def schedule_fingerprint(schedule: Schedule) -> str:
    """A short hash of a noise schedule's alpha_bar: the same x_0 gives another x_T (and another run) under another."""
    return hashlib.sha256(schedule.alpha_bar.detach().double().cpu().numpy().tobytes()).hexdigest()[:16]


def _read_cached_x_T(path: Path, shape: torch.Size) -> torch.Tensor | None:
    """A cached x_T of this shape, or None (with a warning when a file is there but damaged, so it is remade)."""
    if not path.is_file():
        return None
    try:
        x_T = load_file(str(path))["x_T"]
    except (SafetensorError, KeyError, OSError) as error:
        warnings.warn(f"{path} is not a readable inversion ({type(error).__name__}); inverting again", stacklevel=3)
        return None
    if x_T.shape != shape or not torch.isfinite(x_T).all():
        warnings.warn(f"{path} holds an x_T of shape {tuple(x_T.shape)} (expected {tuple(shape)}) or non-finite "
                      f"values; inverting again", stacklevel=3)
        return None
    return x_T


def cached_inversion(unet, schedule: Schedule, images: torch.Tensor, num_steps: int, cache_dir: Path,
                     progress: bool = True, codec: LatentCodec | None = None,
                     fixed_point_iters: int = 0) -> torch.Tensor:
    """x_T of DDIM inversion, read from cache_dir when the same model, images and steps were inverted before.

    codec: for a latent diffusion model; the images are encoded to z0 first and z0 is inverted.
    fixed_point_iters: see `ddim_invert` (0 = plain DDIM inversion, as the authors invert; an editor's
    `EditorConfig.inversion_iters` says how its training images were inverted)."""
    if codec is not None:
        with torch.no_grad():
            images = codec.encode(images)  # z0, (N, C_z, h, w): what the latent U-Net was trained on
    model, sched = unet_fingerprint(unet), schedule_fingerprint(schedule)
    key = hashlib.sha256(model.encode())
    # everything x_T depends on: model, images (values and shape), schedule, steps, iterations, pixels or latents
    key.update(images.detach().float().cpu().numpy().tobytes())
    key.update(f"shape={tuple(images.shape)} latent={codec is not None}".encode())
    key.update(sched.encode())
    key.update(str(num_steps).encode())
    if fixed_point_iters:
        key.update(f"fixed_point_iters={fixed_point_iters}".encode())
    path = Path(cache_dir) / f"inversion_{key.hexdigest()[:20]}.safetensors"
    cached = _read_cached_x_T(path, images.shape)
    if cached is not None:
        return cached.to(images)  # the device and dtype of the images (or latents) inverted
    if codec is None:  # the toy faces the notebooks and the CLI edit ship inverted (`shipped_cache`)
        shipped = shipped_inversion(model, sched, images, num_steps, fixed_point_iters)
        if shipped is not None:
            return shipped.to(images)
    x_T = ddim_invert(unet_noise_model(unet), images, schedule, num_steps, progress=progress,
                      latent=codec is not None, fixed_point_iters=fixed_point_iters)
    save_safetensors_atomic({"x_T": x_T}, path)
    return x_T
