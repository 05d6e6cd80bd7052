"""The first stage of a latent diffusion model: an autoencoder, and the codec between images and the latents z.

Rombach et al. 2022 (LDM): a diffusion model runs on z = E(x) instead of x, and a decoder D maps its samples back.
Both worlds use one `LatentCodec`, written like diffusers' pipelines:

    z = (E(x) − shift) · scale          the latent the U-Net sees (unit spread)
    x = D(z / scale + shift)            the image it stands for

The toy autoencoder is a small diffusers `AutoencoderKL` (32² RGB -> 16² × 4), trained here on toy faces with
‖D(E(x)) − x‖² + β·KL, β = 1e-6 as in the LDM paper. `CompVis/ldm-celebahq-256` uses a `VQModel` instead
(256² -> 64² × 3), whose U-Net was trained on unscaled latents (scale 1, no shift; `registry.load_ldm`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import toy
from .checks import check_images
from .models import load_checked, load_weights, save_safetensors_atomic, save_torch_atomic

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, VQModel

TOY_VAE_FILE = "toy_vae.safetensors"
STATE_FILE = "vae_state.pt"

# 32² RGB -> 16² × 4: one downsampling (the last block never downsamples); small enough to train in minutes on a CPU.
TOY_VAE_CONFIG: dict = {
    "in_channels": 3, "out_channels": 3, "sample_size": 32,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (24, 48), "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 8,
    "mid_block_add_attention": False,
}

# The first stage of CompVis/ldm-celebahq-256 (diffusers VQModel): 256² RGB -> 64² × 3, a codebook of 8192.
LDM_CELEBA_HQ_VQ_CONFIG: dict = {
    "in_channels": 3, "out_channels": 3, "sample_size": 256,
    "down_block_types": ("DownEncoderBlock2D",) * 3, "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (128, 256, 512), "layers_per_block": 2, "latent_channels": 3,
    "num_vq_embeddings": 8192, "vq_embed_dim": 3, "norm_num_groups": 32,
}


def build_autoencoder(config: dict | None = None) -> AutoencoderKL | VQModel:
    """A diffusers AutoencoderKL (toy config by default) or, for a config with num_vq_embeddings, a VQModel."""
    from diffusers import AutoencoderKL, VQModel

    config = dict(config or TOY_VAE_CONFIG)
    return VQModel(**config) if "num_vq_embeddings" in config else AutoencoderKL(**config)


class LatentCodec(torch.nn.Module):
    """Images (B, 3, H, W) in [-1, 1] <-> latents z (B, C_z, H/f, W/f) with z = (E(x) − shift) · scale."""

    def __init__(self, autoencoder, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.autoencoder, self.scale, self.shift = autoencoder, float(scale), float(shift)

    @property
    def is_vq(self) -> bool:
        """True for a VQModel (decode quantises z to the codebook, gradients pass straight through)."""
        return hasattr(self.autoencoder, "quantize")

    @property
    def downsampling(self) -> int:
        """Image side / latent side (2 for the toy autoencoder, 4 for CelebA-HQ's VQ-VAE)."""
        return 2 ** (len(self.autoencoder.config.block_out_channels) - 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """z = (E(x) − shift) · scale: the posterior mean (KL) or the pre-quantisation latent (VQ)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        check_images(images)  # finite and in [-1, 1]: 0…255 pixels would encode to nonsense latents
        images = images.to(next(self.autoencoder.parameters()))  # toy faces are drawn on the CPU
        out = self.autoencoder.encode(images)
        # E(x): (B, C_z, H/f, W/f)
        latent = out.latents if self.is_vq else out.latent_dist.mean
        return (latent - self.shift) * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x = D(z / scale + shift), (B, 3, H, W); differentiable (editors train through it)."""
        return self.autoencoder.decode(z / self.scale + self.shift).sample


@dataclass
class AutoencoderTrainResult:
    """Where the weights went and the loss of every step run in this call."""

    weights: Path
    losses: list[float] = field(default_factory=list)
    step: int = 0


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per image, summed over latent entries: (B,)."""
    # KL = ½ Σ (μ² + σ² − 1 − log σ²)
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def latent_statistics(autoencoder, n: int = 2048, seed: int = 0, batch_size: int = 256) -> tuple[float, float]:
    """(scale, shift) that give the latents of n toy faces mean 0 and standard deviation 1."""
    with torch.no_grad():
        latents = torch.cat([autoencoder.encode(toy.sample(min(batch_size, n - s), seed=seed + s)[0]).latent_dist.mean
                             for s in range(0, n, batch_size)])
    return 1.0 / float(latents.std()), float(latents.mean())


def train_autoencoder(out_dir: Path, steps: int = 3000, batch_size: int = 32, lr: float = 1e-3,
                      kl_weight: float = 1e-6, seed: int = 0, checkpoint_every: int = 500, resume: bool = True,
                      config: dict | None = None, progress: bool = True) -> AutoencoderTrainResult:
    """Train (or resume) the toy AutoencoderKL on fresh toy faces; writes vae_state.pt and toy_vae.safetensors."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps={steps} and batch_size={batch_size} must both be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config or TOY_VAE_CONFIG)
    torch.manual_seed(seed)
    model = build_autoencoder(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start, state_path = 0, out_dir / STATE_FILE
    # what a resumed run must share with the interrupted one (more steps may resume a finished run)
    run = {"config": config, "batch_size": batch_size, "lr": lr, "kl_weight": kl_weight, "seed": seed}
    if resume and state_path.is_file():
        from .checks import check_resumable, load_training_state

        state = load_training_state(state_path, ("model", "optimizer", "step"))
        check_resumable(json.loads(state.get("run", "null")), run, state_path, fixed=("config",))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    result = AutoencoderTrainResult(weights=out_dir / TOY_VAE_FILE, step=start)
    bar = tqdm(range(start, steps), desc="train toy autoencoder", disable=not progress, initial=start, total=steps)
    for step in bar:
        x, _ = toy.sample(batch_size, seed=seed * 1_000_003 + step)  # (B, 3, 32, 32), fresh faces every step
        torch.manual_seed(seed * 1_000_003 + step)  # the posterior sample below replays on resume
        posterior = model.encode(x).latent_dist
        # z ~ q(z | x) = N(μ, σ²)   (B, 4, 16, 16)
        z = posterior.sample()
        recon = model.decode(z).sample
        # L = ‖D(z) − x‖² + β · KL(q(z | x) ‖ N(0, I)) / (number of pixels)
        loss = F.mse_loss(recon, x) + kl_weight * kl_to_standard_normal(posterior.mean, posterior.logvar).mean() \
            / x[0].numel()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate (--lr)")
        for group in optimizer.param_groups:  # warm-up over 100 steps, cosine decay to 10%
            group["lr"] = lr * min(1.0, (step + 1) / 100) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        result.losses.append(loss.item())
        result.step = step + 1
        bar.set_postfix(loss=f"{loss.item():.5f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            save_torch_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                               "run": json.dumps(run)}, state_path)
    model.eval()
    scale, shift = latent_statistics(model, seed=seed)
    save_safetensors_atomic(model.state_dict(), result.weights,
                            {"vae_config": json.dumps(config), "scale": scale, "shift": shift, "seed": seed,
                             "steps": result.step})
    return result


def load_toy_autoencoder(path: Path | None = None, device: str | torch.device = "cpu") -> LatentCodec:
    """The shipped toy autoencoder (sha256-checked) as a LatentCodec in eval mode."""
    tensors, metadata = load_checked(path, TOY_VAE_FILE, "train-vae", needs=("vae_config", "scale", "shift"))
    model = build_autoencoder(json.loads(metadata["vae_config"]))
    load_weights(model, {k: v.float() for k, v in tensors.items()}, path or TOY_VAE_FILE, "the autoencoder's",
                 "train-vae")
    codec = LatentCodec(model, float(metadata["scale"]), float(metadata["shift"]))
    return codec.eval().requires_grad_(False).to(device)


@torch.no_grad()
def autoencoder_mse(codec: LatentCodec, n: int = 256, seed: int = 0) -> float:
    """‖D(E(x)) − x‖² on n held-out toy faces (images in [-1, 1])."""
    x, _ = toy.sample(n, seed=seed, heldout=True)
    return float((codec.decode(codec.encode(x)).clamp(-1, 1) - x).pow(2).mean())

