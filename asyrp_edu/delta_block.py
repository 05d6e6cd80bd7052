"""f_t, Asyrp's editor: a small network mapping (h_t, t) to the h-space edit Δh_t (Kwon et al. 2023, sec. 3).

    a_t    = W_1 h_t + b_1 + W_e · SiLU(temb_t) + b_e       1×1 conv, plus a per-channel time shift
    Δh_t   = f_t(h_t) = W_2 · SiLU(GroupNorm_32(a_t)) + b_2   1×1 conv

The parameter names (conv1, temb_proj, norm2, conv2) and the layer sizes are those of the authors' `DeltaBlock`
(Asyrp_official, models/ddpm/diffusion.py), so their released CelebA-HQ editors load with strict=True: for the
CelebA-HQ 256² DDPM, h_t is (B, 512, 8, 8) and temb_t is the U-Net's own 512-d timestep embedding.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# The eight tensors of the authors' DeltaBlock state dict.
OFFICIAL_KEYS = frozenset(f"{layer}.{kind}" for layer in ("conv1", "temb_proj", "norm2", "conv2")
                          for kind in ("weight", "bias"))
# The authors' editors for guided-diffusion U-Nets (e.g. AFHQ-dog) use another, pre-norm block with these names.
GUIDED_DIFFUSION_PREFIXES = ("in_layers.", "emb_layers.", "out_layers.")
OFFICIAL_EDITORS_URL = "https://github.com/kwonminki/Asyrp_official/tree/main/checkpoint"


class DeltaBlock(nn.Module):
    """f_t: 1×1 conv → + Linear(SiLU(temb)) → GroupNorm(32) → SiLU → 1×1 conv, from h_t to Δh_t."""

    def __init__(self, channels: int, temb_channels: int, groups: int = 32, eps: float = 1e-6,
                 ignore_timesteps: bool = False) -> None:
        super().__init__()
        # the authors' --ignore_timesteps: Δh_t = f(h_t) with no time shift (temb_proj is kept, unused, so that
        # the state dict stays the same)
        self.ignore_timesteps = bool(ignore_timesteps)
        if channels % groups:
            raise ValueError(f"GroupNorm({groups}) needs channels divisible by {groups}, got channels={channels}; "
                             f"pass groups=<a divisor of {channels}>")
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=1)
        self.temb_proj = nn.Linear(temb_channels, channels)
        # eps = 1e-6 as the authors' Normalize() (the same GroupNorm as their U-Net's)
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=1)
        # A fresh f_t starts at Δh_t = 0 (conv2 = 0), so training starts from the unedited model;
        # gradients still reach conv2 and, once it moves away from 0, the rest. (The authors used PyTorch's default
        # init here; loading a checkpoint overwrites this either way.)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    @property
    def channels(self) -> int:
        """C_h, the channels of the h_t this block edits."""
        return self.conv1.in_channels

    @property
    def temb_channels(self) -> int:
        """temb_dim, the width of the timestep embedding it takes."""
        return self.temb_proj.in_features

    def forward(self, h: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """Δh_t = f_t(h_t, temb_t): (B, C_h, H, W), (B, temb_dim) -> (B, C_h, H, W); temb=None ignores t."""
        # a_t = W_1 h_t + b_1       (B, C_h, H, W)
        a = self.conv1(h)
        if temb is not None and not self.ignore_timesteps:
            # a_t ← a_t + W_e SiLU(temb_t) + b_e, one shift per channel      (B, C_h, 1, 1)
            a = a + self.temb_proj(F.silu(temb))[:, :, None, None]
        # Δh_t = W_2 SiLU(GroupNorm(a_t)) + b_2      (B, C_h, H, W)
        return self.conv2(F.silu(self.norm2(a)))


def check_compatible(block: DeltaBlock, h_shape: tuple[int, ...] | torch.Size, temb_dim: int) -> None:
    """Raise a ValueError naming the fix when f_t cannot edit h_t of shape h_shape, (B, C, H, W) or (C, H, W)."""
    channels = h_shape[-3] if len(h_shape) in (3, 4) else None
    if channels != block.channels:
        raise ValueError(
            f"this editor was made for h with {block.channels} channels, but the model's h has shape "
            f"{tuple(h_shape)} ({channels} channels); use an editor trained for this model, "
            f"e.g. a fresh DeltaBlock({channels}, {temb_dim}), or the U-Net the editor was trained with "
            f"(the authors' CelebA-HQ editors need the 256² CelebA-HQ DDPM, h = (B, 512, 8, 8))")
    if temb_dim != block.temb_channels:
        raise ValueError(
            f"this editor takes a {block.temb_channels}-d timestep embedding, but the model's is {temb_dim}-d; "
            f"use an editor trained for this model, e.g. a fresh DeltaBlock({block.channels}, {temb_dim})")


def _official_state_dict(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """The DeltaBlock state dict inside one of the authors' checkpoints ({'0': state_dict, 'optimizer', …})."""
    state = checkpoint.get("0", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} is not an Asyrp editor checkpoint: expected {{'0': state_dict, 'optimizer': …, "
                         f"'scheduler': …}} or a DeltaBlock state dict; download one from {OFFICIAL_EDITORS_URL}")
    # editors saved from nn.DataParallel carry a "module." prefix
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith(GUIDED_DIFFUSION_PREFIXES) for k in state):
        raise ValueError(f"{path.name} is an editor for a guided-diffusion U-Net (keys in_layers/emb_layers/"
                         f"out_layers, e.g. the AFHQ-dog editors), a different block for a different model; "
                         f"DeltaBlock loads the DDPM-style editors (keys conv1/temb_proj/norm2/conv2), "
                         f"e.g. the CelebA-HQ ones (*_LC_CelebA_HQ_*.pth)")
    if set(state) != OFFICIAL_KEYS:
        raise ValueError(f"{path.name} does not hold a DeltaBlock: missing {sorted(OFFICIAL_KEYS - set(state))}, "
                         f"unexpected {sorted(set(state) - OFFICIAL_KEYS)}; pass a *_LC_*.pth editor with keys "
                         f"conv1/temb_proj/norm2/conv2")
    return state


def load_official_delta_block(path: str | Path) -> DeltaBlock:
    """One of the authors' released editors as a DeltaBlock (eval mode); its sizes are read from the checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no editor checkpoint at {path}; the authors' editors are at {OFFICIAL_EDITORS_URL}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise ValueError(f"{path} is not a PyTorch checkpoint that loads with weights_only=True "
                         f"({type(error).__name__}); pass one of the authors' *_LC_*.pth editors") from error
    state = _official_state_dict(checkpoint, path)
    # conv1: (C_h, C_h, 1, 1), temb_proj: (C_h, temb_dim)
    channels, temb_channels = state["temb_proj.weight"].shape
    if state["conv1.weight"].shape != (channels, channels, 1, 1):
        raise ValueError(f"{path.name}: conv1 has shape {tuple(state['conv1.weight'].shape)}, expected a 1×1 conv "
                         f"{(channels, channels, 1, 1)}; this is not the authors' DeltaBlock")
    block = DeltaBlock(channels, temb_channels)
    try:
        block.load_state_dict(state, strict=True)
    except RuntimeError as error:  # a tensor of the wrong size
        raise ValueError(f"{path.name} does not fit DeltaBlock({channels}, {temb_channels}): {error}") from error
    return block.eval()
