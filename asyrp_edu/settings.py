"""Run-size switches shared by notebooks, the demo and tests."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def smoke() -> bool:
    """True when ASYRP_EDU_SMOKE=1: notebooks and demos shrink their step counts for fast tests."""
    return os.environ.get("ASYRP_EDU_SMOKE", "0") not in ("", "0", "false", "False")


def steps(default: int, smoke_value: int) -> int:
    """`default` normally, `smoke_value` under ASYRP_EDU_SMOKE=1."""
    return smoke_value if smoke() else default


def cache_dir(given: str | Path | None = None) -> Path:
    """Where measured tables, inversions and downloaded editors are kept: `given`, else $ASYRP_EDU_CACHE, else
    ~/.cache/asyrp_edu. Not relative to the working directory, so a notebook in notebooks/ and a terminal at the
    repository root share one cache."""
    if given is not None:
        return Path(given)
    return Path(os.environ.get("ASYRP_EDU_CACHE") or Path.home() / ".cache" / "asyrp_edu")


def default_device() -> torch.device:
    """CUDA when available, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def checked_device(name: str | torch.device) -> torch.device:
    """torch.device(name), refused with the fix when it is not a device, or a GPU that torch cannot see here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {name!r} is not a device torch knows; use cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no GPU is visible to torch here; leave --device out to run on the CPU")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} GPU(s), cuda:0 … cuda:{count - 1}")
    return device


def bf16_autocast_is_fast(device: str | torch.device) -> bool:
    """Whether bfloat16 autocast speeds training up on this device rather than slowing it down.

    A GPU with bf16 support: yes. A CPU: only where oneDNN has bf16 kernels (AVX512, AVX512-BF16 or AMX on x86,
    bf16 instructions on ARM). Elsewhere, e.g. on an AVX2-only CPU, torch falls back to slow kernels: a toy DDPM
    training step at batch 16 took 6.3 s there against 0.51 s in float32 (2-core AMD EPYC, AVX2;
    `benchmarks/ddpm_train_precision.py`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False  # MPS and others: float32, the safe choice
    try:  # what torch itself asks before it picks oneDNN's bf16 kernels
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: no bf16 kernels either
        return False


def run_report(started: float) -> str:
    """What a notebook run took since `started` (time.time()): minutes, and peak GPU memory when on a GPU."""
    import time

    text = f"this run took {(time.time() - started) / 60:.1f} minutes"
    if torch.cuda.is_available():
        text += f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GB"
    return text
