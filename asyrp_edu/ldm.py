"""Latent diffusion: a UNet2DModel on z = E(x) plus a codec back to images; the toy LDM and its trajectory movies.

Asyrp needs nothing new for an LDM: h is still the latent U-Net's mid-block output, so `hspace`, f_t and the
asymmetric step run unchanged on z_t. Only the losses look at images, so P_t is decoded first:

    P_t^edit (latent) = (z_t − sqrt(1 − alpha_bar_t) · ε_θ(z_t | Δh_t)) / sqrt(alpha_bar_t)     (B, C_z, h, w)
    image the CLIP loss sees = D(P_t^edit)                                                 (B, 3, H, W)

with gradients flowing through the frozen decoder D into f_t.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from . import toy
from .autoencoder import TOY_VAE_FILE, LatentCodec, load_toy_autoencoder
from .checks import sha256_of
from .ddim import Schedule
from .editing import Intervals, generate_edited
from .hspace import DeltaH
from .models import CELEBA_HQ_UNET_CONFIG, WEIGHTS_DIR, atomic_write, load_shipped_unet

if TYPE_CHECKING:
    from .train_ddpm import DDPMTrainResult

TOY_LDM_FILE = "toy_ldm.safetensors"

# The toy latent U-Net: the CelebA-HQ blocks on 16² × 4 latents, one downsampling, so h is (B, 96, 8, 8) as in the
# pixel toy model (and the mid block sits at 8×8, as in CelebA-HQ's and CompVis/ldm-celebahq-256's U-Nets).
TOY_LATENT_UNET_CONFIG: dict = {
    **CELEBA_HQ_UNET_CONFIG,
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": (48, 96), "norm_num_groups": 8,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
}

# The latent U-Net of CompVis/ldm-celebahq-256 (64² × 3 latents, h = (B, 896, 8, 8)), as its unet/config.json on the
# hub states; only benchmarks build it at full size.
LDM_CELEBA_HQ_UNET_CONFIG: dict = {
    "sample_size": 64, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
    "block_out_channels": (224, 448, 672, 896),
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": 32,
}


@dataclass
class LatentDDPM:
    """A latent diffusion model: the frozen U-Net and schedule act on z; the codec turns z into images and back."""

    unet: torch.nn.Module
    schedule: Schedule
    codec: LatentCodec

    @property
    def image_size(self) -> int:
        """Side of the images (latent side × the autoencoder's downsampling)."""
        return int(self.unet.config.sample_size) * self.codec.downsampling


def load_toy_ldm(path: Path | None = None, autoencoder_path: Path | None = None,
                 device: str | torch.device = "cpu") -> LatentDDPM:
    """The shipped toy LDM: latent U-Net (EMA weights) + autoencoder, both sha256-checked."""
    unet, schedule = load_shipped_unet(path, TOY_LDM_FILE, "train-ddpm --world toy-ldm", device)
    codec = load_toy_autoencoder(autoencoder_path, device)
    latent_channels = codec.autoencoder.config.latent_channels
    if unet.config.in_channels != latent_channels:  # e.g. toy_ddpm.safetensors, a pixel DDPM
        raise ValueError(f"{path} holds a U-Net of {unet.config.in_channels} input channels, but the autoencoder's "
                         f"latents have {latent_channels}; a pixel DDPM goes with --world toy, a latent one comes from "
                         "`asyrp-edu train-ddpm --world toy-ldm`")
    return LatentDDPM(unet, schedule, codec)


def train_toy_ldm(out_dir: Path, codec: LatentCodec | None = None, steps: int = 8000,
                  autoencoder_file: Path | None = None, **kwargs) -> DDPMTrainResult:
    """Train (or resume) the toy latent U-Net on the latents of fresh toy faces (see `train_ddpm` for kwargs).

    codec: the autoencoder (default: the shipped one); autoencoder_file: the file it was loaded from, whose name and
    sha256 the weights' metadata records."""
    from .train_ddpm import train_ddpm

    if codec is None:
        codec = load_toy_autoencoder()
        made_with = {"autoencoder": TOY_VAE_FILE, "autoencoder_sha256": _shipped_vae_sha()}
    elif autoencoder_file is not None:
        made_with = {"autoencoder": Path(autoencoder_file).name, "autoencoder_sha256": sha256_of(autoencoder_file)}
    else:  # a codec built in code: no file to name
        made_with = {"autoencoder": "passed in code", "autoencoder_sha256": "unknown"}

    @torch.no_grad()
    def draw(n: int, seed: int) -> torch.Tensor:
        """z0 = (E(x) − shift) · scale of n fresh faces: (n, 4, 16, 16)."""
        return codec.encode(toy.sample(n, seed=seed)[0])

    kwargs.setdefault("coarse_cell", 4)
    return train_ddpm(Path(out_dir), steps=steps, config=kwargs.pop("config", TOY_LATENT_UNET_CONFIG), draw=draw,
                      weights_file=TOY_LDM_FILE, metadata=made_with, **kwargs)


def _shipped_vae_sha() -> str:
    """sha256 of the autoencoder the latents came from (recorded in the latent U-Net's metadata)."""
    path = WEIGHTS_DIR / TOY_VAE_FILE
    return sha256_of(path) if path.is_file() else "unknown"


@dataclass
class Frame:
    """One step of a trajectory as images: x_t (decoded z_t) and P_t (decoded predicted latent)."""

    t: int
    kind: str  # 'edit', 'ddim' or 'boost' for a step; 'end' for the final x_0 (t = −1)
    x_t: torch.Tensor  # (B, 3, H, W)
    P_t: torch.Tensor  # (B, 3, H, W)


@torch.no_grad()
def trajectory_frames(unet, schedule: Schedule, x_T: torch.Tensor, num_steps: int = 40,
                      codec: LatentCodec | None = None, delta_h: DeltaH = None,
                      intervals: Intervals | None = None, progress: bool = False) -> list[Frame]:
    """Run the (edited) reverse process and return x_t and P_t at every step as images (decoded for an LDM).

    intervals: where delta_h edits; by default every step when delta_h is given, none without it."""
    intervals = intervals or Intervals(0 if delta_h is not None else schedule.T - 1, T=schedule.T)
    _, steps = generate_edited(unet, x_T, schedule, delta_h, intervals, num_steps, return_trajectory=True,
                               progress=progress)
    decode = codec.decode if codec is not None else (lambda z: z)
    frames, x_t = [], x_T
    for t, kind, out in tqdm(steps, desc="decoding z_t and P_t", disable=not progress, leave=False):
        frames.append(Frame(t, kind, decode(x_t).clamp(-1, 1), decode(out.P_t).clamp(-1, 1)))
        x_t = out.prev_sample
    x_0 = decode(x_t).clamp(-1, 1)
    frames.append(Frame(-1, "end", x_0, x_0))  # the sample itself: x_0 and its prediction coincide
    return frames


def frames_to_gif(frames: list[Frame], path: Path | None = None, n_images: int = 4, upscale: int = 4,
                  ms_per_frame: int = 120) -> bytes:
    """An animated GIF: per frame, a row of x_t and a row of P_t for the first n_images; written atomically to path
    when given. Returns the GIF's bytes (show them with IPython.display.Image(data=...))."""
    from PIL import Image, ImageDraw

    if not frames:
        raise ValueError("no frames to animate; run trajectory_frames(...) first")
    pictures = []
    for frame in frames:
        rows = [torch.cat(list(batch[:n_images]), dim=2) for batch in (frame.x_t, frame.P_t)]  # (3, H, n·W) each
        grid = torch.cat(rows, dim=1)  # (3, 2H, n·W)
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=upscale, mode="nearest")[0]
        array = ((grid + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).contiguous().cpu().numpy()
        picture = Image.new("RGB", (array.shape[1], array.shape[0] + 14), "white")
        picture.paste(Image.fromarray(array), (0, 14))
        label = "end" if frame.t < 0 else f"t = {frame.t} ({frame.kind})   top: x_t   bottom: P_t"
        ImageDraw.Draw(picture).text((2, 1), label, fill="black")
        pictures.append(picture)
    buffer = io.BytesIO()
    durations = [ms_per_frame] * (len(pictures) - 1) + [ms_per_frame * 10]  # rest on the result
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    data = buffer.getvalue()
    if path is not None:
        atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
    return data
