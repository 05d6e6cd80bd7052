"""h-space: the bottleneck of a diffusers UNet2DModel, and Asyrp's asymmetric reverse process that edits it.

Kwon et al. 2023 (ICLR), sec. 3. Split the noise predictor ε_θ(x_t, t) at the output of the middle block:

    h_t               = mid(down(conv_in(x_t), t), t)          the semantic latent, (B, 512, 8, 8) for CelebA-HQ 256²
    ε_θ(x_t | Δh_t)   = out(up(h_t + Δh_t, skips(x_t), t))     the decoder, on the edited bottleneck

and give the edited prediction to P_t only (the asymmetric reverse process):

    x_{t-1} = sqrt(alpha_bar_{t-1}) · P_t(ε_θ(x_t | Δh_t)) + D_t(ε_θ(x_t)) + σ_t z

The encoder half (time embedding, conv_in, down blocks, mid block) does not depend on Δh_t, so it runs once;
only the decoder half runs twice (as one batch of 2B; `shared_skips` computes the skips' share of it once).
Giving the edit to D_t as well ("symmetric") makes the change of P_t and the change of D_t cancel out (the paper's
motivation), which `asymmetric_step(..., symmetric=True)` shows.

Everything below replays `UNet2DModel.forward` of diffusers 0.42 block by block, so `decode(encode(x, t))`
equals `unet(x, t).sample`. A `traced_unet.TracedUNet` may stand in for the model: the same code, replayed as
TorchScript graphs (the widgets render with one on a CPU).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Union

import torch

from . import shared_skips
from .ddim import Schedule, StepOutput, ddim_step
from .delta_block import DeltaBlock, check_compatible

# An edit of h_t: a tensor broadcastable to h_t, or f_t itself, called as f_t(h_t, temb) -> Δh_t (a DeltaBlock).
DeltaH = Union[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], None]
Timestep = Union[int, float, torch.Tensor]

SUPPORTED_TIME_EMBEDDINGS = ("positional", "fourier", "learned")


@dataclass
class Encoded:
    """What UNet2DModel.forward holds when it reaches the bottleneck: h_t and everything the decoder needs."""

    h: torch.Tensor  # h_t, the mid-block output               (B, C_h, H_h, W_h); (B, 512, 8, 8) for CelebA-HQ
    res_samples: tuple[torch.Tensor, ...]  # skip activations, conv_in first    (B, C_i, H_i, W_i) each
    emb: torch.Tensor  # time (+ class) embedding the resnets see            (B, temb_dim)
    timesteps: torch.Tensor  # t broadcast to the batch (fourier models divide by it at the end)   (B,)

    def repeat(self, n: int) -> "Encoded":
        """The same encoding n times along the batch: (n·B, …), for decoding several edits in one pass."""
        cat = lambda a: torch.cat([a] * n)  # noqa: E731
        return Encoded(cat(self.h), tuple(cat(r) for r in self.res_samples), cat(self.emb), cat(self.timesteps))


def check_supported(unet) -> None:
    """Raise a clear error for a model this module cannot split at h (anything but a diffusers UNet2DModel)."""
    from diffusers import UNet2DModel

    if getattr(unet, "is_traced", False):  # a traced_unet.TracedUNet was checked when it was made
        return
    if not isinstance(unet, UNet2DModel):
        raise TypeError(f"hspace splits diffusers UNet2DModel only, got {type(unet).__name__}; text-conditioned "
                        "models (UNet2DConditionModel) take encoder_hidden_states and are not supported here")
    kind = unet.config.time_embedding_type
    if kind not in SUPPORTED_TIME_EMBEDDINGS:
        raise ValueError(f"time_embedding_type={kind!r} is not supported; use one of {SUPPORTED_TIME_EMBEDDINGS}")


def broadcast_timesteps(t: Timestep, batch: int, device: torch.device) -> torch.Tensor:
    """t as a (B,) tensor, exactly as UNet2DModel.forward broadcasts it (an int becomes int64)."""
    if not torch.is_tensor(t):
        t = torch.tensor([t], dtype=torch.long, device=device)
    elif t.ndim == 0:
        t = t[None]
    t = t.to(device)
    # t ← t · 1_B         (B,)
    return t * torch.ones(batch, dtype=t.dtype, device=device)


def _embed(unet, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
    """The embedding every resnet receives: MLP(proj(t)) (+ the class embedding)."""
    # proj(t): sinusoid (positional), [sin, cos](2π·W·log t) (fourier) or a table row (learned)   (B, C_0 or 2·C_0)
    t_emb = unet.time_proj(timesteps).to(dtype=unet.dtype)
    # temb = Linear(SiLU(Linear(proj(t))))     (B, temb_dim), temb_dim = 4·C_0 = 512 for CelebA-HQ
    emb = unet.time_embedding(t_emb)
    if unet.class_embedding is not None:
        if class_labels is None:
            raise ValueError("this U-Net is class-conditional; pass class_labels (B,) as UNet2DModel needs them")
        if unet.config.class_embed_type == "timestep":
            class_labels = unet.time_proj(class_labels)
        # temb ← temb + E_class[y]          (B, temb_dim)
        emb = emb + unet.class_embedding(class_labels).to(dtype=unet.dtype)
    elif class_labels is not None:
        raise ValueError("class_labels were given but this U-Net has no class embedding; drop class_labels")
    return emb


def temb(unet, t: Timestep, batch: int, class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The U-Net's own timestep embedding (B, temb_dim): the temb that f_t(h_t, temb) consumes."""
    check_supported(unet)
    device = unet.time_embedding.linear_1.weight.device  # where the embedding lives (the rest may be elsewhere)
    return _embed(unet, broadcast_timesteps(t, batch, device), class_labels)


def encode(unet, x: torch.Tensor, t: Timestep, class_labels: torch.Tensor | None = None) -> Encoded:
    """Run the encoder half of ε_θ: time embedding, conv_in, down blocks and mid block, up to h_t."""
    if getattr(unet, "is_traced", False):  # a traced_unet.TracedUNet: this same function, replayed as a graph
        return unet.encode(x, t, class_labels)
    check_supported(unet)
    if unet.config.center_input_sample:
        # x ← 2x − 1, for models trained on images in [0, 1]
        x = 2 * x - 1.0
    timesteps = broadcast_timesteps(t, x.shape[0], x.device)  # (B,)
    emb = _embed(unet, timesteps, class_labels)  # (B, temb_dim)
    # skip-variant models (NCSN++) carry the image itself down the skip_conv branch
    skip_sample = x  # (B, C_in, H, W)
    sample = unet.conv_in(x)  # (B, C_0, H, W)
    res_samples: tuple[torch.Tensor, ...] = (sample,)
    for block in unet.down_blocks:
        if hasattr(block, "skip_conv"):
            sample, res, skip_sample = block(hidden_states=sample, temb=emb, skip_sample=skip_sample)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
        # each resnet (and downsampler) output is kept for the matching up block   (B, C_i, H_i, W_i)
        res_samples += res
    if unet.mid_block is not None:
        # h_t = mid(sample): resnet → attention → resnet      (B, C_h, H_h, W_h)
        sample = unet.mid_block(sample, emb)
    return Encoded(sample, res_samples, emb, timesteps)


def resolve_delta_h(delta_h: DeltaH, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor | None:
    """Δh_t as a tensor: f_t(h_t, temb) if delta_h is f_t; checked to broadcast to h_t (B, C_h, H_h, W_h)."""
    if delta_h is None:
        return None
    if isinstance(delta_h, DeltaBlock):
        check_compatible(delta_h, h.shape, emb.shape[1])  # a clear error before conv1 fails on the channels
    dh = delta_h(h, emb) if callable(delta_h) else delta_h
    try:
        ok = torch.broadcast_shapes(dh.shape, h.shape) == h.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"Δh of shape {tuple(dh.shape)} does not broadcast to this model's h of shape "
                         f"{tuple(h.shape)}; an editor must be made for h with {h.shape[1]} channels "
                         f"(e.g. DeltaBlock({h.shape[1]}, {emb.shape[1]}))")
    return dh


def decode(unet, enc: Encoded, delta_h: DeltaH = None) -> torch.Tensor:
    """Run the decoder half of ε_θ from h_t + Δh_t: up blocks, norm, SiLU, conv_out; returns ε (B, C_out, H, W)."""
    dh = resolve_delta_h(delta_h, enc.h, enc.emb)
    # h_t ← h_t + Δh_t          (B, C_h, H_h, W_h)
    sample = enc.h if dh is None else enc.h + dh
    if getattr(unet, "is_traced", False):  # a traced_unet.TracedUNet: the rest of this function, as a graph
        return unet.decode(sample, enc)
    res_samples, skip_sample = enc.res_samples, None
    for block in unet.up_blocks:
        # each up block takes back the last len(resnets) skip activations, deepest first
        res, res_samples = res_samples[-len(block.resnets):], res_samples[: -len(block.resnets)]
        if hasattr(block, "skip_conv"):
            sample, skip_sample = block(sample, res, enc.emb, skip_sample)
        else:
            sample = block(sample, res, enc.emb)
    return _output_head(unet, sample, enc.timesteps, skip_sample)


def _output_head(unet, sample: torch.Tensor, timesteps: torch.Tensor, skip_sample: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """The last layers after the up blocks: GroupNorm, SiLU, conv_out (+ the skip branch, ÷ σ for Fourier models)."""
    # ε = conv_out(SiLU(GroupNorm(sample)))     (B, C_out, H, W)
    sample = unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))
    if skip_sample is not None:
        # skip-variant models add the image-resolution skip branch
        sample = sample + skip_sample
    if unet.config.time_embedding_type == "fourier":
        # score models output ε / σ: divide by t (here σ)      (B, C_out, H, W)
        sample = sample / timesteps.reshape(-1, *([1] * (sample.ndim - 1)))
    return sample


def decode_pair(unet, enc: Encoded, h_edit: torch.Tensor) -> torch.Tensor:
    """[ε_θ(x_t) ; ε_θ(x_t | Δh_t)] (2B, C_out, H, W): both decoder passes, the skips' share computed once."""
    if getattr(unet, "is_traced", False):  # a traced_unet.TracedUNet: this same function, replayed as a graph
        return unet.decode_pair(enc, h_edit)
    sample = shared_skips.up_blocks_pair(unet, enc, h_edit)  # (2B, C_0, H, W)
    return _output_head(unet, sample, torch.cat([enc.timesteps, enc.timesteps]))


def asymmetric_eps(
    unet,
    x: torch.Tensor,
    t: Timestep,
    delta_h: DeltaH,
    class_labels: torch.Tensor | None = None,
    batched: bool = True,
    share_skips: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ε_θ(x_t), ε_θ(x_t | Δh_t), h_t): the encoder runs once, the decoder twice (one 2B batch if batched).

    share_skips (with batched): compute the part of each up-block resnet that sees only skips once for both passes
    (`shared_skips`) where the model's blocks allow it: always (True), never (False), or where the input is large
    enough for that to pay (None, `shared_skips.worth_it`)."""
    enc = encode(unet, x, t, class_labels)
    dh = resolve_delta_h(delta_h, enc.h, enc.emb)  # Δh_t = f_t(h_t, temb)     (B, C_h, H_h, W_h)
    if dh is None:
        eps = decode(unet, enc)
        return eps, eps, enc.h
    if not batched:
        return decode(unet, enc), decode(unet, enc, dh), enc.h
    if share_skips is not False and (share_skips or shared_skips.worth_it(enc)) and shared_skips.supports(unet):
        # [ε_θ(x_t) ; ε_θ(x_t | Δh_t)], the skips' share of each up-block resnet computed once    (2B, C_out, H, W)
        eps, eps_edit = decode_pair(unet, enc, enc.h + dh).chunk(2)
        return eps, eps_edit, enc.h
    # [h_t ; h_t + Δh_t] with the skips and temb repeated: one decoder pass      (2B, C_h, H_h, W_h)
    both = replace(enc.repeat(2), h=torch.cat([enc.h, enc.h + dh.expand_as(enc.h)]))
    # [ε_θ(x_t) ; ε_θ(x_t | Δh_t)]         (2B, C_out, H, W)
    eps, eps_edit = decode(unet, both).chunk(2)
    return eps, eps_edit, enc.h


def asymmetric_step(
    unet,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    schedule: Schedule,
    delta_h: DeltaH,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: bool = False,
    symmetric: bool = False,
    class_labels: torch.Tensor | None = None,
) -> StepOutput:
    """One reverse step t -> t_prev with h_t edited in P_t only (symmetric=True: in P_t and D_t, for comparison)."""
    if symmetric:
        # ε_θ(x_t | Δh_t) for both terms: one encoder and one decoder pass
        eps_edit = decode(unet, encode(unet, x_t, t, class_labels), delta_h)
        # x_{t-1} = sqrt(alpha_bar_{t-1}) · P_t(ε_θ(x_t | Δh_t)) + D_t(ε_θ(x_t | Δh_t)) + σ_t z
        return ddim_step(x_t, eps_edit, eps_edit, t, t_prev, schedule, eta, noise, clip_x0)
    eps, eps_edit, _ = asymmetric_eps(unet, x_t, t, delta_h, class_labels)
    # x_{t-1} = sqrt(alpha_bar_{t-1}) · P_t(ε_θ(x_t | Δh_t)) + D_t(ε_θ(x_t)) + σ_t z
    return ddim_step(x_t, eps_edit, eps, t, t_prev, schedule, eta, noise, clip_x0)


def two_pass_eps(
    unet, x: torch.Tensor, t: Timestep, delta_h: DeltaH, class_labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive reference: two full forward passes, the second with Δh_t added by a hook on the mid block."""

    def add_delta_h(module, inputs, h) -> torch.Tensor:
        # h_t ← h_t + Δh_t, where inputs = (sample, temb) of mid_block(sample, temb)
        return h + resolve_delta_h(delta_h, h, inputs[1])

    eps = unet(x, t, class_labels).sample
    handle = unet.mid_block.register_forward_hook(add_delta_h)
    try:
        eps_edit = unet(x, t, class_labels).sample
    finally:
        handle.remove()
    return eps, eps_edit


def h_shape(unet) -> tuple[int, int, int]:
    """(C_h, H_h, W_h) of h_t for an input of the model's sample_size, read from the config (no forward pass)."""
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    downs = sum(getattr(block, "downsamplers", None) is not None for block in unet.down_blocks)
    # every downsampler halves H and W (the last down block has none)
    return unet.config.block_out_channels[-1], height // 2**downs, width // 2**downs


def temb_dim(unet) -> int:
    """The width of the U-Net's timestep embedding: what f_t's temb_proj must take (512 for CelebA-HQ)."""
    return unet.time_embedding.linear_2.out_features
