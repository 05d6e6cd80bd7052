"""Seconds per toy DDPM training step in float32 and in bfloat16 autocast, side by side, and what `train-ddpm` picks.

    python benchmarks/ddpm_train_precision.py [--batch-size 16] [--steps 5]

`train_ddpm` uses bfloat16 autocast only where `settings.bf16_autocast_is_fast` says the device has bf16 kernels:
on a CPU without them (AVX2 only) torch falls back to slow kernels and bfloat16 costs over ten times float32.
Each precision trains the same U-Net from the same seed; one warm-up step is not timed.
"""
from __future__ import annotations

import argparse
import time

import torch

from asyrp_edu.cli_editors import positive_int
from asyrp_edu.models import build_unet
from asyrp_edu.settings import bf16_autocast_is_fast


def seconds_per_step(bf16: bool, batch_size: int, steps: int) -> float:
    """Mean seconds of `steps` timed steps (forward, backward, AdamW) after one warm-up step."""
    torch.manual_seed(0)
    model = build_unet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
    x0 = torch.randn(batch_size, 3, 32, 32)  # (B, 3, 32, 32), stands in for toy faces: the cost is the same
    t = torch.randint(0, 1000, (batch_size,))
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            eps_pred = model(x0, t).sample  # (B, 3, 32, 32)
        loss = torch.nn.functional.mse_loss(eps_pred.float(), x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=positive_int, default=16, help="notebook 01 trains at 16")
    parser.add_argument("--steps", type=positive_int, default=5, help="timed steps per precision")
    args = parser.parse_args()
    fp32 = seconds_per_step(False, args.batch_size, args.steps)
    bf16 = seconds_per_step(True, args.batch_size, args.steps)
    picked = "bfloat16 autocast" if bf16_autocast_is_fast("cpu") else "float32"
    print(f"toy DDPM training step on the CPU, batch {args.batch_size}, {torch.get_num_threads()} threads "
          f"({torch.backends.cpu.get_cpu_capability()}):")
    print(f"  float32 {fp32:.3f} s, bfloat16 autocast {bf16:.3f} s, bfloat16 / float32 = {bf16 / fp32:.2f}")
    print(f"  train-ddpm picks {picked} here")


if __name__ == "__main__":
    main()
