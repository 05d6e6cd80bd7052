"""The decoder's two passes in an asymmetric step share their skip half: Asyrp for less than one extra decoder.

`hspace.asymmetric_eps` decodes h_t and h_t + Δh_t. Both passes see the same skip activations s (the encoder ran
once), and every up-block resnet starts on the concatenation [a ; s] of the running activation a and a skip s:

    r([a ; s]) = conv2(SiLU(GN(conv1(SiLU(GN([a ; s]))) + temb))) + shortcut([a ; s])

A convolution of a concatenation is a sum of convolutions, one per part (W = [W_a , W_s]):

    conv1(u) = W_a * u_a + W_s * u_s + b            shortcut([a ; s]) = S_a * a + S_s * s + b_S

GroupNorm normalises each group of channels on its own, so u_s = SiLU(GN(·)) of the groups that hold only skip
channels is the same in both passes; so are W_s * u_s and S_s * s. They are computed once (batch B) and added to
both passes (batch 2B). Only the group that straddles a and s, if any, is recomputed per pass.

For the CelebA-HQ 256² U-Net this shares 102 of the decoder's 362 GFLOP: one asymmetric step costs
497 + 362 − 102 GFLOP, 1.52 plain steps instead of 1.73 (`benchmarks/asymmetric_step_cost.py`). The result equals
two full forward passes up to float rounding (the sums are taken in another order).

`hspace.decode_pair` runs these up blocks and the model's output head. Up blocks of other kinds (NCSN++'s skip
blocks, FreeU) are not split: `supports(unet)` says False and `hspace.asymmetric_eps` decodes [h_t ; h_t + Δh_t] as
one plain batch of 2B instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SPLIT_UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")

# Sharing trades one convolution per resnet for a few more, smaller ops. When the decoder's input is small (fewer
# than about this many values in the full-resolution skip, batch × C_0 × H × W), those extra ops cost more than the
# FLOPs saved. One asymmetric step on this 2-core CPU, plain batch of 2 / shared:
#   toy DDPM (C_0 = 32, 32²)   batch 1: 18.8 / 20.2 ms (traced)   batch 4: 44.0 / 44.9   batch 8: 91.2 / 85.0
#                              batch 64: 804 / 669 ms
#   CelebA-HQ U-Net (C_0 = 128), batch 1: 64² 1.70 / 1.53 plain steps, 256² 1.73 / 1.51 (benchmarks/)
MIN_SKIP_VALUES = 8 * 32 * 32 * 32  # the toy DDPM at batch 8


def _resnet_ok(resnet: torch.nn.Module) -> bool:
    """A ResnetBlock2D without its own up/down sampling, whose first norm is a GroupNorm: one this module replays."""
    return (type(resnet).__name__ == "ResnetBlock2D" and resnet.upsample is None and resnet.downsample is None
            and isinstance(resnet.norm1, torch.nn.GroupNorm) and isinstance(resnet.conv1, torch.nn.Conv2d)
            and isinstance(resnet.conv_shortcut, (torch.nn.Conv2d, type(None)))
            and resnet.time_embedding_norm in ("default", "scale_shift"))


def supports(unet) -> bool:
    """Whether every up block of this UNet2DModel is one whose resnets can share their skip half."""
    if getattr(unet, "is_traced", False):  # a traced_unet.TracedUNet: whether the model it replays does
        return supports(unet.unet)
    if not hasattr(unet, "up_blocks"):
        return False
    for block in unet.up_blocks:
        if type(block).__name__ not in SPLIT_UP_BLOCKS or getattr(block, "s1", None):  # s1..b2 set: FreeU is on
            return False
        if getattr(block, "upsample_type", "conv") not in ("conv", "resnet"):
            return False
        if not all(_resnet_ok(r) for r in block.resnets):
            return False
    return True


def worth_it(enc) -> bool:
    """Whether this decoder input (an hspace.Encoded) is large enough for sharing to pay (MIN_SKIP_VALUES)."""
    # conv_in's output, the full-resolution skip       (B, C_0, H, W)
    return enc.res_samples[0].numel() >= MIN_SKIP_VALUES


def _twice(shared: torch.Tensor, per_pass: torch.Tensor) -> torch.Tensor:
    """per_pass (2B, …) += shared (B, …) in each pass's half: in place (per_pass is a fresh conv output)."""
    # in place: at 256² a new (2, 128, 256, 256) tensor costs more to allocate than the sum itself
    per_pass.unflatten(0, (2, -1)).add_(shared)
    return per_pass


def _conv(conv: torch.nn.Conv2d, x: torch.Tensor, channels: slice, bias: bool) -> torch.Tensor:
    """conv restricted to some of its input channels: W[:, channels] * x (+ b)."""
    return conv._conv_forward(x, conv.weight[:, channels], conv.bias if bias else None)


def _group_norm(norm: torch.nn.GroupNorm, x: torch.Tensor, channels: slice, per_group: int) -> torch.Tensor:
    """norm applied to a run of whole groups (channels), with that run's affine weights."""
    weight = None if norm.weight is None else norm.weight[channels]
    bias = None if norm.bias is None else norm.bias[channels]
    return F.group_norm(x, x.shape[1] // per_group, weight, bias, norm.eps)


def resnet_pair(resnet, a: torch.Tensor, s: torch.Tensor, emb2: torch.Tensor) -> torch.Tensor:
    """ResnetBlock2D on [a ; s] in both passes: a (2B, C_a, H, W), skip s (B, C_s, H, W), temb (2B, D)."""
    c_a, c_in = a.shape[1], a.shape[1] + s.shape[1]
    per_group = c_in // resnet.norm1.num_groups
    # k: the first channel of a group made of skip channels only (groups before it see a, so they differ per pass)
    k = -(-c_a // per_group) * per_group
    # u_front = SiLU(GN([a ; s_:k])), per pass                        (2B, k, H, W)
    front = torch.cat([a, s[:, : k - c_a].repeat(2, 1, 1, 1)], dim=1) if k > c_a else a
    front = resnet.nonlinearity(_group_norm(resnet.norm1, front, slice(0, k), per_group))
    # conv1(u) = W_front * u_front + b  (+ W_back * u_back below)      (2B, C, H, W)
    x = _conv(resnet.conv1, front, slice(0, k), bias=True)
    if k < c_in:
        # u_back = SiLU(GN(s_k:)): the same in both passes, so computed once     (B, c_in − k, H, W)
        back = resnet.nonlinearity(_group_norm(resnet.norm1, s[:, k - c_a:], slice(k, c_in), per_group))
        x = _twice(_conv(resnet.conv1, back, slice(k, c_in), bias=False), x)

    temb = None
    if resnet.time_emb_proj is not None:
        # temb ← Linear(SiLU(temb))          (2B, C or 2C, 1, 1)
        temb = resnet.time_emb_proj(emb2 if resnet.skip_time_act else resnet.nonlinearity(emb2))[:, :, None, None]
    if resnet.time_embedding_norm == "default":
        x = resnet.norm2(x if temb is None else x.add_(temb))
    else:
        # scale-shift: GN(x)·(1 + scale) + shift
        scale, shift = temb.chunk(2, dim=1)
        x = resnet.norm2(x) * (1 + scale) + shift
    x = resnet.conv2(resnet.dropout(resnet.nonlinearity(x)))  # (2B, C, H, W)

    if resnet.conv_shortcut is not None:
        # shortcut([a ; s]) = S_a * a + b_S + S_s * s, the skip part once      (2B, C, H, W)
        shortcut = _twice(_conv(resnet.conv_shortcut, s, slice(c_a, c_in), bias=False),
                          _conv(resnet.conv_shortcut, a, slice(0, c_a), bias=True))
    else:
        shortcut = torch.cat([a, s.repeat(2, 1, 1, 1)], dim=1)
    # r([a ; s]) = (shortcut + x) / output_scale_factor, in place on the fresh shortcut
    return shortcut.add_(x).div_(resnet.output_scale_factor)


def up_blocks_pair(unet, enc, h_edit: torch.Tensor) -> torch.Tensor:
    """The up blocks on [h_t ; h_t + Δh_t] with shared skips: (2B, C_0, H, W), for hspace.decode_pair's output head."""
    # the two bottlenecks, one after the other: [h_t ; h_t + Δh_t]       (2B, C_h, H_h, W_h)
    sample = torch.cat([enc.h, h_edit.expand_as(enc.h)])
    emb2 = torch.cat([enc.emb, enc.emb])  # (2B, temb_dim)
    skips = list(enc.res_samples)
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attention in zip(block.resnets, attentions):
            # the deepest unused skip, shared by both passes        (B, C_s, H, W)
            sample = resnet_pair(resnet, sample, skips.pop(), emb2)
            if attention is not None:
                sample = attention(sample)
        for upsampler in block.upsamplers or []:
            resnet_up = getattr(block, "upsample_type", "conv") == "resnet"
            sample = upsampler(sample, temb=emb2) if resnet_up else upsampler(sample)
    return sample
