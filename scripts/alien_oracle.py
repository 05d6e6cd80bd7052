"""Can the toy DDPM's h-space reach a green face at all? f_t trained on ground-truth greenness instead of CLIP.

The unseen-domain `alien` editor, trained with the tiny CLIP, does not reach green faces (README, "Known
shortfalls"). This diagnostic swaps the CLIP loss for the thing being measured, so it tells the two failures apart:
an h-space that cannot express the edit, or a CLIP gradient that does not lead there. Loss per edited step:

    L = max(0, 0.35 − greenness(P_t^edit)) + λ·|P_t^edit − P_t^src|_background + 0.1·|P_t^edit − P_t^src|

With --cheeks, greenness is scored on the cheeks only (below the fringe, which dyed hair could turn green) and the
background term also holds the hair. --ddpm runs it on another toy DDPM (`alien_broad_world.py`).

Usage: python scripts/alien_oracle.py [--lr 1e-3] [--lam 1] [--t-edit 400] [--cheeks] [--ddpm FILE]
                                      [--out runs/alien_oracle.png]
(about 2 minutes on 2 cores; prints the `asyrp-edu evaluate`-style numbers and saves a before/after grid).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from asyrp_edu import toy
from asyrp_edu.ddim import Schedule, ddim_step, predict_x0
from asyrp_edu.delta_block import DeltaBlock
from asyrp_edu.editing import Intervals, generate_edited
from asyrp_edu.evaluate_edits import alien_success, background_change, greenness
from asyrp_edu.evaluator import load_evaluator
from asyrp_edu.hspace import asymmetric_eps
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.settings import cache_dir
from asyrp_edu.train_asyrp import cached_inversion, new_editor
from asyrp_edu.viz import image_grid, save_figure

OracleLoss = Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor]  # (P_t^edit, P_t^src, batch) -> loss
GREEN_TARGET = 0.35  # a rendered alien face scores 0.44 or more


def cheek_greenness(images: torch.Tensor) -> torch.Tensor:
    """`greenness` of rows 16-25 only (below the fringe), times 10/16, the share of greenness's rows they are: (B,)."""
    cheeks = images[..., 16:26, 10:22]  # (B, 3, 10, 12)
    r, g, b = cheeks[:, 0].mean((1, 2)), cheeks[:, 1].mean((1, 2)), cheeks[:, 2].mean((1, 2))
    return (g - (r + b) / 2) * 10 / 16


def train_oracle(unet, schedule, x_T: torch.Tensor, loss: OracleLoss, t_edit: int, epochs: int = 3,
                 lr: float = 1e-3, on_epoch: Callable[[int, torch.Tensor, float], None] | None = None) -> DeltaBlock:
    """A fresh f_t (from torch's global seed) trained on x_T in batches of 8 with `loss(P_t^edit, P_t^src, batch)`
    at every step of [T, t_edit], along the edited asymmetric trajectory. on_epoch(epoch, last P_t^edit, last loss)
    reports."""
    editor = new_editor(unet)
    optimizer = torch.optim.Adam(editor.parameters(), lr=lr)
    grid = schedule.timesteps(40)
    for epoch in range(epochs):
        for b in range(0, len(x_T), 8):
            x = x_T[b:b + 8]  # (8, 3, 32, 32)
            for i, t in enumerate(grid):
                if t < t_edit:
                    break
                eps, eps_edit, _ = asymmetric_eps(unet, x, t, editor)
                # P_t^edit = P_t(ε_θ(x_t | Δh_t)),  P_t^src = P_t(ε_θ(x_t))
                P_edit, P_src = predict_x0(x, eps_edit, schedule.at(t)), predict_x0(x, eps, schedule.at(t)).detach()
                value = loss(P_edit, P_src, slice(b, b + 8))
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                with torch.no_grad():
                    step = ddim_step(x, eps_edit.detach(), eps.detach(), t, schedule.previous(grid, i), schedule)
                    x = step.prev_sample
        if on_epoch is not None:
            on_epoch(epoch, P_edit.detach(), value.item())
    return editor


def main() -> None:
    """Train the oracle editor on 32 training faces, then judge it on 64 held-out faces."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lam", type=float, default=1.0, help="weight of the L1 term outside the face")
    p.add_argument("--t-edit", type=int, default=400)
    p.add_argument("--cheeks", action="store_true", help="score the cheeks only and hold the hair too")
    p.add_argument("--ddpm", type=Path, help="a toy DDPM file instead of the shipped one")
    p.add_argument("--out", type=Path, default=Path("runs/alien_oracle.png"))
    args = p.parse_args()
    first = Schedule.linear().timesteps(40)[0]  # the 40-step grid this script edits on
    if not 0 <= args.t_edit <= first:  # checked before the inversions, which take a minute
        p.error(f"--t-edit must lie in [0, {first}] (above the first of the 40 steps nothing is edited)")
    torch.manual_seed(0)
    unet, schedule = load_toy_ddpm(args.ddpm)
    score = cheek_greenness if args.cheeks else greenness
    unet.requires_grad_(False)
    faces, _ = toy.sample(32, seed=0)
    x_T_all = cached_inversion(unet, schedule, faces, 40, cache_dir(), progress=False, fixed_point_iters=2)
    outside_face = torch.ones(1, 1, 32, 32)
    top = 13 if args.cheeks else 6  # rows above it: the hair
    outside_face[..., top:30, 6:26] = 0  # (1, 1, 32, 32): 1 on the background (and the hair with --cheeks)

    def loss(P_edit: torch.Tensor, P_src: torch.Tensor, batch: slice) -> torch.Tensor:
        return torch.relu(GREEN_TARGET - score(P_edit)).mean() \
            + args.lam * ((P_edit - P_src).abs() * outside_face).mean() + 0.1 * (P_edit - P_src).abs().mean()

    def report(epoch: int, P_edit: torch.Tensor, value: float) -> None:
        print(f"epoch {epoch}: loss {value:.3f}, greenness of P_t {float(greenness(P_edit).mean()):.2f}")

    editor = train_oracle(unet, schedule, x_T_all, loss, args.t_edit, lr=args.lr, on_epoch=report)
    heldout, _ = toy.sample(64, seed=0, heldout=True)
    x_T = cached_inversion(unet, schedule, heldout, 40, cache_dir(), progress=False, fixed_point_iters=2)
    judge = load_evaluator()
    with torch.no_grad():
        plain = generate_edited(unet, x_T, schedule, None, Intervals(args.t_edit), 40).clamp(-1, 1)
        edited = generate_edited(unet, x_T, schedule, editor, Intervals(args.t_edit), 40).clamp(-1, 1)
    before, after = judge(plain), judge(edited)
    leakage = {k: round(float((after[k] - before[k]).abs().mean()), 2) for k in toy.CONTINUOUS_ATTRIBUTES}
    print(f"success {float(alien_success(edited, plain).float().mean()):.0%}, "
          f"greenness change {float((greenness(edited) - greenness(plain)).mean()):+.2f}, "
          f"background change {float(background_change(edited, plain).mean()):.2f}, leakage {leakage}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(image_grid([plain[:8], edited[:8]], row_titles=["unedited", "oracle f_t"]), args.out, dpi=90)
    print(f"grid: {args.out}")


if __name__ == "__main__":
    main()
