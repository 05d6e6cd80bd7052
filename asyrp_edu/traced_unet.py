"""The same U-Net split at h, with each half traced by TorchScript: identical numbers, less Python per pass.

A toy U-Net pass on a CPU spends about a third of its time in Python: diffusers' ~200 module calls, each a few
microseconds, around convolutions that take tens of microseconds. A slider render runs 16 of them, so the widgets
replay traced graphs instead, in which the same aten ops run from C++:

    eager   hspace.encode(unet, x_t, t)  →  h_t, skips, temb       hspace.decode(unet, ·, Δh_t)  →  ε
    traced  the graph recorded from that same code, once per input shape, weights shared (not copied)

`hspace.encode`, `hspace.decode` and `UNet2DModel`-style calls accept a `TracedUNet` in place of the model, so
`editing.generate_edited` runs unchanged on it. The graphs hold the model's own parameter tensors, so they see
in-place weight updates, but not weights swapped for new tensors: trace again after loading other weights.
Used for rendering only (no class labels, no gradients); `benchmarks/slider_latency.py` measures both paths.
"""
from __future__ import annotations

import warnings

import torch

from . import hspace


class _EncoderHalf(torch.nn.Module):
    """hspace.encode as a module of tensors: (x_t, t) → (h_t, skips, temb)."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor,
                timesteps: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        enc = hspace.encode(self.unet, x, timesteps)
        return enc.h, enc.res_samples, enc.emb


class _DecoderHalf(torch.nn.Module):
    """hspace.decode as a module of tensors: (h_t + Δh_t, skips, temb, t) → ε."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, h: torch.Tensor, res_samples: tuple[torch.Tensor, ...], emb: torch.Tensor,
                timesteps: torch.Tensor) -> torch.Tensor:
        return hspace.decode(self.unet, hspace.Encoded(h, res_samples, emb, timesteps))


class _DecoderPair(torch.nn.Module):
    """hspace.decode_pair as a module of tensors: (h_t, h_t + Δh_t, skips, temb, t) → [ε ; ε_edit]."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, h: torch.Tensor, h_edit: torch.Tensor, res_samples: tuple[torch.Tensor, ...],
                emb: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return hspace.decode_pair(self.unet, hspace.Encoded(h, res_samples, emb, timesteps), h_edit)


class _FullPass(torch.nn.Module):
    """ε_θ(x_t, t) in one pass: the model's own forward."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.unet(x, timesteps).sample


class TracedUNet:
    """A diffusers UNet2DModel whose encoder half, decoder half and full pass run as TorchScript graphs."""

    is_traced = True  # what hspace looks for; a UNet2DModel has no such attribute

    def __init__(self, unet: torch.nn.Module):
        hspace.check_supported(unet)
        if unet.class_embedding is not None:
            raise ValueError("TracedUNet renders unconditional models only; use the class-conditional U-Net itself")
        self.unet = unet
        self._halves = {"encode": _EncoderHalf(unet), "decode": _DecoderHalf(unet), "full": _FullPass(unet),
                        "decode_pair": _DecoderPair(unet)}
        self.graphs: dict[tuple, torch.nn.Module] = {}  # (half, input shapes, dtype, device) → traced graph

    def _run(self, half: str, *inputs):
        """Trace `half` for these input shapes on first use, then replay the graph (eager if tracing fails)."""
        shapes = tuple(tuple(t.shape) for x in inputs for t in (x if isinstance(x, tuple) else (x,)))
        key = (half, shapes, inputs[0].dtype, inputs[0].device)
        if key not in self.graphs:
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # trace's deprecation notice, its "shape read as constant" notes
                    self.graphs[key] = torch.jit.trace(self._halves[half], inputs, check_trace=False)
            except Exception as error:  # noqa: BLE001 — any torch that cannot trace this renders eagerly instead
                warnings.warn(f"TorchScript could not trace the U-Net's {half} pass ({error}); rendering eagerly")
                self.graphs[key] = self._halves[half]
        return self.graphs[key](*inputs)

    def encode(self, x: torch.Tensor, t: hspace.Timestep, class_labels: torch.Tensor | None = None) -> hspace.Encoded:
        """hspace.encode, traced."""
        if class_labels is not None:
            raise ValueError("TracedUNet renders unconditional models only; drop class_labels")
        timesteps = hspace.broadcast_timesteps(t, x.shape[0], x.device)  # (B,)
        h, res_samples, emb = self._run("encode", x, timesteps)
        return hspace.Encoded(h, tuple(res_samples), emb, timesteps)

    def decode(self, h: torch.Tensor, enc: hspace.Encoded) -> torch.Tensor:
        """The decoder half from an already edited h_t + Δh_t, traced: ε (B, C_out, H, W)."""
        return self._run("decode", h, tuple(enc.res_samples), enc.emb, enc.timesteps)

    def decode_pair(self, enc: hspace.Encoded, h_edit: torch.Tensor) -> torch.Tensor:
        """hspace.decode_pair, traced: [ε_θ(x_t) ; ε_θ(x_t | Δh_t)] (2B, C_out, H, W)."""
        # h_edit as it is (e.g. channels-last like h_t): another memory layout would round the convolutions otherwise
        skips = tuple(enc.res_samples)
        return self._run("decode_pair", enc.h, h_edit.expand_as(enc.h), skips, enc.emb, enc.timesteps)

    def __call__(self, x: torch.Tensor, t: hspace.Timestep, class_labels: torch.Tensor | None = None):
        """unet(x_t, t).sample, traced (returns the diffusers output type)."""
        from diffusers.models.unets.unet_2d import UNet2DOutput

        if class_labels is not None:
            raise ValueError("TracedUNet renders unconditional models only; drop class_labels")
        return UNet2DOutput(sample=self._run("full", x, hspace.broadcast_timesteps(t, x.shape[0], x.device)))


TRACE_UP_TO_SIZE = 32  # the toy DDPM (32²) and the toy LDM (16² latents); larger models are compute-bound


def trace_for_rendering(unet: torch.nn.Module) -> TracedUNet | torch.nn.Module:
    """A TracedUNet for a small model on a CPU, where Python is a third of a pass; else the model itself.

    Large models (the 256² CelebA-HQ U-Net takes seconds per pass on a CPU) gain nothing worth a trace, GPUs are left
    to the eager model, and a model that cannot be traced (class-conditional) renders eagerly."""
    size = unet.config.sample_size
    small = max(size if isinstance(size, (tuple, list)) else (size,)) <= TRACE_UP_TO_SIZE
    if not small or next(unet.parameters()).device.type != "cpu" or not hasattr(torch, "jit"):
        return unet
    try:
        return TracedUNet(unet)
    except (TypeError, ValueError):
        return unet
