"""How sure is issue 4's "Δh averaged over images and t" share? One editor on several sets of 64 held-out faces.

`asyrp-edu hspace` measures each share on 64 held-out faces. This script repeats the homogeneity part for one editor
on `--sets` sets of 64 (held-out seeds 0, 1, …; seed 0 is the set `hspace` uses) and prints the share pooled over
all of them with a 95% bootstrap interval over faces. About 1.5 to 2 minutes per set on a 2-core CPU (6 minutes for
four sets once their inversions are cached in settings.cache_dir()).

    python scripts/homogeneity_precision.py --edit smiling --sets 4
    python scripts/homogeneity_precision.py --edit smiling --sets 2 --editor runs/editors/smiling/editor.safetensors
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from asyrp_edu import toy
from asyrp_edu.cli_editors import positive_int
from asyrp_edu.editing import Intervals, generate_edited
from asyrp_edu.evaluate_edits import TOY_EDITS
from asyrp_edu.evaluator import load_evaluator
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.properties import delta_h_along_trajectory, global_delta_h, unedited_judgement
from asyrp_edu.settings import cache_dir
from asyrp_edu.train_asyrp import cached_inversion, load_editor


def share_with_interval(per_image: torch.Tensor, global_: torch.Tensor, draws: int = 4000,
                        seed: int = 0) -> tuple[float, float, float]:
    """mean(global_) / mean(per_image) over faces, and its 95% bootstrap interval (faces resampled in pairs)."""
    if per_image.shape != global_.shape or per_image.ndim != 1:
        raise ValueError(f"need two (N,) tensors of per-face changes, got {tuple(per_image.shape)} and "
                         f"{tuple(global_.shape)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(per_image), (draws, len(per_image)), generator=g)  # (draws, N)
    boot = global_[idx].mean(1) / per_image[idx].mean(1)
    lo, hi = boot.quantile(torch.tensor([0.025, 0.975], dtype=boot.dtype))
    return float(global_.mean() / per_image.mean()), float(lo), float(hi)


@torch.no_grad()
def per_face_changes(edit: str, sets: int, num_steps: int = 40, n_global: int = 16,
                     editor_file: str | None = None) -> dict[str, torch.Tensor]:
    """Per-face change of the edited attribute under f_t and under its global Δh (over images; over images and t)."""
    unet, schedule = load_toy_ddpm()
    judge = load_evaluator()
    editor, config = load_editor(unet, path=editor_file, edit=edit)
    attribute, cache, iters = TOY_EDITS[edit]["attribute"], cache_dir(), config.inversion_iters
    train_x_T = cached_inversion(unet, schedule, toy.sample(n_global, seed=0)[0], num_steps, cache, progress=False,
                                 fixed_point_iters=iters)  # the training faces `hspace` averages over
    per_image = delta_h_along_trajectory(unet, schedule, editor, config.t_edit, train_x_T, num_steps)
    edits = {"f_t": editor, "mean_over_images": global_delta_h(per_image),
             "mean_over_images_and_t": global_delta_h(per_image, over_timesteps=True)}
    changes: dict[str, list[torch.Tensor]] = {name: [] for name in edits}
    start = time.time()
    for seed in range(sets):
        x_T = cached_inversion(unet, schedule, toy.sample(64, seed=seed, heldout=True)[0], num_steps, cache,
                               progress=False, fixed_point_iters=iters)
        base = unedited_judgement(unet, schedule, judge, x_T, num_steps)
        for name, delta_h in edits.items():
            out = generate_edited(unet, x_T, schedule, delta_h, Intervals(config.t_edit), num_steps).clamp(-1, 1)
            changes[name].append((judge(out)[attribute] - base[attribute]).float())  # (64,)
        f_t, both = changes["f_t"][-1].mean(), changes["mean_over_images_and_t"][-1].mean()
        print(f"held-out set {seed}: f_t {f_t:+.3f}, over images and t {both / f_t:.1%} "
              f"({time.time() - start:.0f} s)", flush=True)
    return {name: torch.cat(parts) for name, parts in changes.items()}


def main() -> None:
    """Parse the arguments, measure, and print the pooled shares."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edit", default="smiling", choices=[e for e in TOY_EDITS if e != "alien"])
    parser.add_argument("--sets", type=positive_int, default=4, help="sets of 64 held-out faces (seed 0 is hspace's)")
    parser.add_argument("--editor", help="an editor file trained for --edit (default: the shipped one)")
    args = parser.parse_args()
    if args.editor and not Path(args.editor).is_file():
        parser.error(f"--editor {args.editor}: no such file (an editor.safetensors from `asyrp-edu train`)")
    if args.sets < 1:
        parser.error("--sets must be at least 1")
    changes = per_face_changes(args.edit, args.sets, editor_file=args.editor)
    for name in ("mean_over_images", "mean_over_images_and_t"):
        share, lo, hi = share_with_interval(changes["f_t"], changes[name])
        print(f"{name}: {share:.1%} of f_t's effect on {len(changes['f_t'])} faces (95% bootstrap {lo:.1%}–{hi:.1%})")


if __name__ == "__main__":
    main()
