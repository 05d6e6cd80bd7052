"""How long a slider change takes in the toy world: median time from a new strength to a PNG, and where it goes.

    python benchmarks/slider_latency.py [--steps 16] [--repeats 21]

The inversion is cached when the scene is made (as in the notebooks), so each render runs the reverse process only.
Two renderers are timed in interleaved rounds, so that a busy machine slows both alike: the widgets' own (the U-Net's
halves traced by TorchScript, `asyrp_edu.traced_unet`) and the eager U-Net. Both give the same image.
Goal (issue 4): median ≤ 0.3 s on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections import defaultdict

import torch

from asyrp_edu import hspace, widgets
from asyrp_edu.cli_editors import positive_int, step_count
from asyrp_edu.evaluate_edits import TOY_EDITS
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.traced_unet import TracedUNet

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
    parser.add_argument("--steps", type=step_count, default=widgets.LIVE_STEPS,
                        help="reverse steps per render (editors trained with 40; "
                             "the notebooks' sliders use LIVE_STEPS)")
    parser.add_argument("--repeats", type=positive_int, default=21, help="timed renders (at least 2)")
    parser.add_argument("--edit", default="smiling", choices=sorted(TOY_EDITS))
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the median of one render says nothing about its spread)")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    unet, schedule = load_toy_ddpm()
    traced = widgets.make_scene(unet, schedule, edits=(args.edit,), num_steps=args.steps)
    if not isinstance(traced.renderer, TracedUNet):
        raise SystemExit("this torch could not trace the U-Net; the widgets render eagerly here")
    scenes = {"traced": traced, "eager": dataclasses.replace(traced, renderer=None)}
    for scene in scenes.values():
        widgets.render_strength(scene, args.edit, 1.0)  # warm-up (the first traced render traces)
    gap = (widgets.render_strength(scenes["traced"], args.edit, 1.5)
           - widgets.render_strength(scenes["eager"], args.edit, 1.5)).abs().max().item()

    times: dict[str, list[float]] = {name: [] for name in scenes}
    values = [(-2 + 4 * i / (args.repeats - 1)) for i in range(args.repeats)]
    for value in values:
        for name, scene in scenes.items():
            start = time.perf_counter()
            png = widgets.to_png(widgets.render_strength(scene, args.edit, value))
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"slider → image, {args.steps} steps, {args.repeats} values, {torch.get_num_threads()} threads, "
          f"png {len(png)} bytes; traced and eager images differ by {gap:.1e}")
    print(f"  median traced (the widgets) {median['traced']:.3f} s (goal ≤ 0.3 s), eager {median['eager']:.3f} s, "
          f"traced / eager {median['traced'] / median['eager']:.2f}")

    # where the time goes: the traced renders once more, with a timer around each stage
    stages = [("encoder + mid block (edited steps)", hspace, "encode"),
              ("decoder ×2 (edited steps)", hspace, "decode"),  # a model whose skips cannot be shared
              ("decoder ×2, skips shared (edited steps)", hspace, "decode_pair")]
    for name, module, function in stages:
        setattr(module, function, timed(name, getattr(module, function)))
    TracedUNet.__call__ = timed("full U-Net (unedited steps)", TracedUNet.__call__)
    start = time.perf_counter()
    for value in values:
        timed("PNG for the widget", widgets.to_png)(widgets.render_strength(scenes["traced"], args.edit, value))
    total_traced = time.perf_counter() - start
    STAGES["DDIM arithmetic, f_t, rest"] = total_traced - sum(STAGES.values())
    print("  where the traced render's time goes:")
    for name, seconds in sorted(STAGES.items(), key=lambda kv: -kv[1]):
        if seconds == 0:  # a stage this model does not go through
            continue
        print(f"    {name:38s} {100 * seconds / total_traced:5.1f} %")


if __name__ == "__main__":
    main()
