"""What one Asyrp step costs next to one plain DDIM step: CelebA-HQ 256² U-Net, random weights, float32, batch 1.

    plain        ε_θ(x_t) once, then ddim_step                                  1 encoder + 1 decoder
    asymmetric   hspace.asymmetric_step: encoder once, decoder on [h_t ; h_t + Δh_t]   1 encoder + 2 decoders
                 whose up-block resnets share the part that sees only skips (shared_skips.py): 1.52, not 1.73
    asym_seq     (--also-sequential) the two decoder passes one after the other, nothing shared
    asym_2B      (--also-unshared) the two decoder passes as one plain batch of 2, nothing shared
    naive        two full forward passes, Δh_t = f_t(h_t, temb) added by a mid-block hook   2 encoders + 2 decoders

The methods are timed in interleaved rounds (plain, asymmetric, naive, plain, …) so that a busy machine slows all
of them alike; each prints its median. The FLOP count (torch's FlopCounterMode on the "meta" device: shapes only,
no compute) gives the ratio to expect: the decoder does most of the work (362 of 497 GFLOP), so sharing the encoder
alone would leave 1.73; sharing the skips' part of the decoder too brings the floor to 1.52.

    OMP_NUM_THREADS=1 python benchmarks/asymmetric_step_cost.py            # ~2.5 minutes on one busy CPU core
    OMP_NUM_THREADS=1 python benchmarks/asymmetric_step_cost.py --size 64  # a quick smoke run
    python benchmarks/asymmetric_step_cost.py --device cuda --reps 20      # on a GPU (Colab), in seconds
    python benchmarks/asymmetric_step_cost.py --device cuda --reps 20 --tf32   # with TensorFloat-32 convolutions

On one CPU thread the time follows the FLOPs, so the asymmetric step costs about its FLOP ratio (1.52 for this
U-Net); with more threads a batch of 2 keeps them busier than a batch of 1 does, and it costs a little less. A GPU
at batch 1 is far from busy, and the decoder's batch of 2 costs less than two batches of 1.
On a GPU the run is exact float32 by default (TF32 off), so that the asymmetric step matches two full passes to
1e-5; `--tf32` allows TensorFloat-32, PyTorch's default for cuDNN convolutions, which is faster but rounds each
batch shape differently (gaps near 1e-3).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from asyrp_edu import hspace, shared_skips
from asyrp_edu.cli_editors import positive_int
from asyrp_edu.ddim import Schedule, ddim_step
from asyrp_edu.delta_block import DeltaBlock
from asyrp_edu.models import CELEBA_HQ_UNET_CONFIG


def flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of fn() (convolutions, matmuls, attention)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def flop_ratio(size: int) -> tuple[float, float, float, bool]:
    """(encoder, decoder, both decoder passes as asymmetric_step runs them) GFLOPs of the CelebA-HQ U-Net at size²,
    on meta, and whether that step shares the skips' part (`shared_skips.worth_it`: not for small images)."""
    from diffusers import UNet2DModel

    with torch.device("meta"), torch.no_grad():
        unet = UNet2DModel(**CELEBA_HQ_UNET_CONFIG)
        x = torch.empty(1, 3, size, size)
        enc = hspace.encode(unet, x, 500)
        shared = shared_skips.worth_it(enc) and shared_skips.supports(unet)
        decoder = flops(lambda: hspace.decode(unet, enc))
        pair = flops(lambda: hspace.decode_pair(unet, enc, enc.h)) if shared else 2 * decoder
        return flops(lambda: hspace.encode(unet, x, 500)) / 1e9, decoder / 1e9, pair / 1e9, shared


def main() -> None:
    """Build the model, time the three steps side by side, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=positive_int, default=3, help="timed repetitions of each step (median reported)")
    parser.add_argument("--size", type=positive_int, default=256, help="image size (256 = the real CelebA-HQ model)")
    parser.add_argument("--also-sequential", action="store_true",
                        help="also time the asymmetric step with its two decoder passes run one after the other")
    parser.add_argument("--also-unshared", action="store_true",
                        help="also time the two decoder passes as one plain batch of 2, without shared skips")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tf32", action="store_true",
                        help="on a GPU, allow TensorFloat-32 (faster; asymmetric and naive then differ by ~1e-3)")
    args = parser.parse_args()
    if args.size % 32:  # the CelebA-HQ U-Net halves the image five times, down to h at size / 32
        parser.error(f"--size must be a multiple of 32 (256 is the real model's), got {args.size}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU is visible to torch here; run on the CPU (the default)")
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32

    torch.manual_seed(0)
    from asyrp_edu.models import build_unet

    unet = build_unet(CELEBA_HQ_UNET_CONFIG).eval().requires_grad_(False).to(device)
    schedule, t, t_prev = Schedule.linear(), 500, 475
    x_t = torch.randn(1, 3, args.size, args.size).to(device)
    # f_t with a non-zero conv2 so that Δh_t ≠ 0 (a fresh DeltaBlock starts at Δh_t = 0)
    f_t = DeltaBlock(512, hspace.temb_dim(unet)).eval().requires_grad_(False)
    torch.nn.init.normal_(f_t.conv2.weight, std=0.02)
    f_t.to(device)

    def synchronize() -> None:
        """Wait for queued GPU work, so that a timer sees all of it."""
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain():
        eps = unet(x_t, t).sample
        return ddim_step(x_t, eps, eps, t, t_prev, schedule)

    def asymmetric():
        return hspace.asymmetric_step(unet, x_t, t, t_prev, schedule, f_t)

    def naive():
        eps, eps_edit = hspace.two_pass_eps(unet, x_t, t, f_t)
        return ddim_step(x_t, eps_edit, eps, t, t_prev, schedule)

    def asymmetric_sequential():
        eps, eps_edit, _ = hspace.asymmetric_eps(unet, x_t, t, f_t, batched=False)
        return ddim_step(x_t, eps_edit, eps, t, t_prev, schedule)

    def asymmetric_unshared():
        eps, eps_edit, _ = hspace.asymmetric_eps(unet, x_t, t, f_t, share_skips=False)
        return ddim_step(x_t, eps_edit, eps, t, t_prev, schedule)

    methods = {"plain": plain, "asymmetric": asymmetric, "naive": naive}
    if args.also_sequential:
        methods["asym_seq"] = asymmetric_sequential
    if args.also_unshared:
        methods["asym_2B"] = asymmetric_unshared
    times: dict[str, list[float]] = {name: [] for name in methods}
    print(f"CelebA-HQ U-Net ({sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M params), x_t {tuple(x_t.shape)}, "
          f"float32{' (TF32 allowed)' if args.tf32 else ''}, {device.type.upper()}, "
          f"torch threads = {torch.get_num_threads()}, {args.reps} interleaved rounds")
    with torch.no_grad():
        out_asym, out_naive = asymmetric(), naive()  # warm-up, and a check that both compute the same step
        gap = (out_asym.prev_sample - out_naive.prev_sample).abs().max().item()
        print(f"warm-up done; max |x_(t-1) asymmetric - naive| = {gap:.2e} "
              f"({'within' if gap <= 1e-5 else 'OUTSIDE'} the 1e-5 of an exact match)")
        for round_ in range(args.reps):
            for name, fn in methods.items():
                synchronize()
                start = time.perf_counter()
                fn()
                synchronize()
                times[name].append(time.perf_counter() - start)
            rounds = ", ".join(f"{n} {v[-1] * 1e3:.1f} ms" for n, v in times.items())
            print(f"round {round_ + 1}: {rounds}", flush=True)

    median = {name: statistics.median(v) for name, v in times.items()}
    enc_gflop, dec_gflop, pair_gflop, shared = flop_ratio(args.size)
    plain_gflop = enc_gflop + dec_gflop
    expected = {"plain": 1.0, "asymmetric": (enc_gflop + pair_gflop) / plain_gflop, "naive": 2.0,
                "asym_seq": (enc_gflop + 2 * dec_gflop) / plain_gflop}
    expected["asym_2B"] = expected["asym_seq"]
    print(f"\nGFLOPs of one forward pass: encoder {enc_gflop:.1f} + decoder {dec_gflop:.1f}; both decoder passes "
          + (f"with shared skips {pair_gflop:.1f} (not shared: {2 * dec_gflop:.1f})" if shared else
             f"{pair_gflop:.1f}: at {args.size}² the asymmetric step does not share the skips (shared_skips.worth_it)"))
    print(f"{'step':<12}{'median ms':>10}{'/ plain':>10}{'FLOP ratio':>12}")
    for name in methods:
        print(f"{name:<12}{median[name] * 1e3:>10.1f}{median[name] / median['plain']:>10.2f}{expected[name]:>12.2f}")
    print(f"\nasymmetric / plain = {median['asymmetric'] / median['plain']:.2f} (goal ≤ 1.6), "
          f"naive / plain = {median['naive'] / median['plain']:.2f} (≈ 2.0)")


if __name__ == "__main__":
    main()
