"""How long a slider change takes in the toy world: median time from a new strength to a PNG, and where it goes.

    python benchmarks/slider_latency.py [--steps 16] [--repeats 21]

The inversion is cached when the scene is made (as in the notebooks), so each render runs the reverse process only.
Goal (issue 4): median ≤ 0.3 s on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from asyrp_edu import hspace, widgets
from asyrp_edu.models import load_toy_ddpm

STAGES: dict[str, float] = defaultdict(float)


def timed(name: str, fn):
    """fn, with its wall time added to STAGES[name]."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STAGES[name] += time.perf_counter() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=widgets.LIVE_STEPS,
                        help="reverse steps per render (editors trained with 40; the notebooks' sliders use LIVE_STEPS)")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--edit", default="smiling")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    unet, schedule = load_toy_ddpm()
    scene = widgets.make_scene(unet, schedule, edits=(args.edit,), num_steps=args.steps)
    widgets.render_strength(scene, args.edit, 1.0)  # warm-up
    hspace.encode = timed("encoder + mid block (edited steps)", hspace.encode)
    hspace.decode = timed("decoder ×2 (edited steps)", hspace.decode)
    unet.forward = timed("full U-Net (unedited steps)", unet.forward)
    STAGES.clear()
    times = []
    values = [(-2 + 4 * i / (args.repeats - 1)) for i in range(args.repeats)]
    for value in values:
        start = time.perf_counter()
        image = widgets.render_strength(scene, args.edit, value)
        png = timed("PNG for the widget", widgets.to_png)(image)
        times.append(time.perf_counter() - start)
    total = sum(times)
    STAGES["DDIM arithmetic, f_t, rest"] = total - sum(STAGES.values())
    print(f"slider → image, {args.steps} steps, {args.repeats} values, {torch.get_num_threads()} threads: "
          f"median {statistics.median(times):.3f} s (goal ≤ 0.3 s), png {len(png)} bytes")
    for name, seconds in sorted(STAGES.items(), key=lambda kv: -kv[1]):
        print(f"  {name:38s} {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
