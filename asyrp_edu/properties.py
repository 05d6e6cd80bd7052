"""The paper's claims about h-space, measured in the toy world: linearity, homogeneity (global Δh), combinations."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ddim import Schedule, ddim_step
from .editing import Intervals, MixedEditor, ScaledEditor, generate_edited, step_scale
from .hspace import asymmetric_eps

SCALES = (-1.0, -0.5, 0.0, 0.5, 1.0)
# For the toy judge (mean error about 0.01 on mouth curvature), a solo effect smaller than this makes no share: the
# ratio of two numbers at the judge's noise level would mean nothing, so it is NaN. (A CLIP judge reads changes of a
# cosine, often a few hundredths: it needs a floor of its own.)
NOISE_FLOOR = 0.01


def share(effect: float, solo: float, noise_floor: float = 0.0) -> float:
    """effect / solo, or NaN when solo is within the judge's noise (|solo| < noise_floor)."""
    return effect / solo if abs(solo) >= noise_floor and solo != 0 else float("nan")


def pearson_r(x: list[float], y: list[float]) -> float:
    """Pearson correlation of two equally long lists; NaN when either does not vary (no correlation to speak of)."""
    if len(x) != len(y):
        raise ValueError(f"pearson_r needs two lists of one length, got {len(x)} and {len(y)}")
    a, b = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    # a spread of float32 rounding (e.g. the mean changes of an editor that does nothing) is no variation either
    if a.norm() < 1e-6 or b.norm() < 1e-6:
        return float("nan")
    return float((a @ b) / (a.norm() * b.norm()))


@dataclass
class Linearity:
    """Mean change of the edited attribute for each Δh scale, and their correlation."""

    scales: list[float]
    mean_change: list[float]
    pearson_r: float


@torch.no_grad()
def unedited_judgement(unet, schedule: Schedule, judge, x_T: torch.Tensor, num_steps: int = 40
                       ) -> dict[str, torch.Tensor]:
    """The judge's reading of x_T regenerated without edits (the same for every t_edit: nothing is edited)."""
    unedited = Intervals(schedule.T - 1, T=schedule.T)  # with no Δh nothing is edited anyway
    return judge(generate_edited(unet, x_T, schedule, None, unedited, num_steps).clamp(-1, 1))


@torch.no_grad()
def measure_linearity(unet, schedule: Schedule, editor, t_edit: int, judge, attribute: str, x_T: torch.Tensor,
                      num_steps: int = 40, scales: tuple[float, ...] = SCALES,
                      base: dict[str, torch.Tensor] | None = None) -> Linearity:
    """Generate with Δh × s for every s and judge the attribute: linear h-space gives r ≈ 1 (negative s: backwards).

    base: the judge's reading of the unedited images, when already computed (`unedited_judgement`).
    """
    base = unedited_judgement(unet, schedule, judge, x_T, num_steps) if base is None else base
    changes = []
    for s in scales:
        if s == 0:  # Δh × 0 is the unedited process
            changes.append(0.0)
            continue
        out = generate_edited(unet, x_T, schedule, ScaledEditor(editor, s), Intervals(t_edit, T=schedule.T),
                              num_steps)
        changes.append(float((judge(out.clamp(-1, 1))[attribute] - base[attribute]).mean()))
    return Linearity(list(scales), changes, pearson_r(list(scales), changes))


@torch.no_grad()
def delta_h_along_trajectory(unet, schedule: Schedule, editor, t_edit: int, x_T: torch.Tensor,
                             num_steps: int = 40) -> dict[int, torch.Tensor]:
    """Δh_t = f_t(h_t, t) on the edited trajectory for every edited t: {t: (B, C_h, 8, 8)}."""
    timesteps = schedule.timesteps(num_steps)
    x, out = x_T, {}
    for i, t in enumerate(timesteps):
        if t < t_edit:
            break
        recorded = {}

        def record(h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
            recorded["dh"] = editor(h, temb)
            return recorded["dh"]

        eps, eps_edit, _ = asymmetric_eps(unet, x, t, record)
        out[t] = recorded["dh"]
        x = ddim_step(x, eps_edit, eps, t, schedule.previous(timesteps, i), schedule).prev_sample
    return out


def global_delta_h(per_image: dict[int, torch.Tensor], over_timesteps: bool = False,
                   keep_norm: bool = False) -> dict[int, torch.Tensor]:
    """Homogeneity: Δh_t averaged over images (and, with over_timesteps, over t too): {t: (1, C_h, 8, 8)}.

    keep_norm (with over_timesteps): give the one shared Δh the mean length of the Δh_t it averages. Averaging
    vectors that point in slightly different directions (cos ≈ 0.8 across t) shortens them; this undoes only that."""
    if keep_norm and not over_timesteps:
        raise ValueError("keep_norm keeps the length of Δh_t averaged over timesteps; pass over_timesteps=True too")
    per_t = {t: dh.mean(0, keepdim=True) for t, dh in per_image.items()}
    if not over_timesteps:
        return per_t
    stacked = torch.stack(list(per_t.values()))  # (n_t, 1, C_h, 8, 8)
    mean = stacked.mean(0)
    if keep_norm:
        # Δh_global = mean_t Δh_t · (mean_t ‖Δh_t‖ / ‖mean_t Δh_t‖)
        mean = mean * stacked.flatten(1).norm(dim=1).mean() / mean.norm().clamp(min=1e-12)
    return {t: mean for t in per_t}


def timestep_cosines(per_t: dict[int, torch.Tensor]) -> tuple[list[int], torch.Tensor]:
    """cos(Δh_t, Δh_s) for every pair of edited timesteps (the paper's consistency across timesteps): (n, n)."""
    ts = sorted(per_t, reverse=True)
    stacked = torch.stack([per_t[t].flatten() for t in ts])  # (n, C_h·8·8)
    flat = F.normalize(stacked, dim=1)
    cos = flat @ flat.T
    zero = stacked.norm(dim=1) == 0  # a Δh_t = 0 has no direction: its cosines are NaN, not 0
    cos[zero, :], cos[:, zero] = float("nan"), float("nan")
    return ts, cos


@torch.no_grad()
def mean_changes(unet, schedule: Schedule, delta_h, t_edit: int, judge, x_T: torch.Tensor, attributes: list[str],
                 num_steps: int = 40, base: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Mean change of each attribute when x_T is generated with delta_h instead of without."""
    base = unedited_judgement(unet, schedule, judge, x_T, num_steps) if base is None else base
    edited = generate_edited(unet, x_T, schedule, delta_h, Intervals(t_edit, T=schedule.T), num_steps)
    after = judge(edited.clamp(-1, 1))
    return {a: float((after[a].float() - base[a].float()).mean()) for a in attributes}


@torch.no_grad()
def combination_effects(unet, schedule: Schedule, editors: dict[str, tuple[torch.nn.Module, int, str]], judge,
                        x_T: torch.Tensor, num_steps: int = 40, base: dict[str, torch.Tensor] | None = None,
                        solo: dict[str, float] | None = None, noise_floor: float = 0.0
                        ) -> dict[str, dict[str, float]]:
    """Each editor's effect on its own attribute alone and with all the others (Δh = Σ Δh_i): {name: {solo, mixed,
    ratio}}. editors maps a name to (f_t, t_edit, judged attribute); in the mix each editor edits in [T, its t_edit].
    solo: the editors' own effects when already measured (e.g. by `measure_linearity` at scale 1). A ratio whose solo
    effect is within noise_floor (the judge's error) is NaN."""
    base = unedited_judgement(unet, schedule, judge, x_T, num_steps) if base is None else base
    mix = MixedEditor({n: e for n, (e, _, _) in editors.items()}, {n: 1.0 for n in editors},
                      {n: t for n, (_, t, _) in editors.items()})  # each editor in its own interval [T, t_edit]
    mixed = mean_changes(unet, schedule, mix, mix.interval_end(schedule.T), judge, x_T,
                         [a for _, _, a in editors.values()], num_steps, base)
    report = {}
    for name, (editor, t_edit, attribute) in editors.items():
        alone = solo[name] if solo and name in solo else \
            mean_changes(unet, schedule, editor, t_edit, judge, x_T, [attribute], num_steps, base)[attribute]
        report[name] = {"solo": alone, "mixed": mixed[attribute], "ratio": share(mixed[attribute], alone, noise_floor)}
    return report


def hspace_report(n: int = 64, num_steps: int = 40, seed: int = 0, n_global: int = 16,
                  edits: tuple[str, ...] = ("smiling", "glasses", "tanned", "blonde")) -> dict:
    """Issue-4 measurements on the shipped toy models and editors: linearity, homogeneity, combinations (JSON-ready)."""
    from tqdm.auto import tqdm

    from . import toy
    from .evaluate_edits import TOY_EDITS
    from .evaluator import load_evaluator
    from .models import load_toy_ddpm
    from .settings import cache_dir
    from .inversion_cache import cached_inversion
    from .train_asyrp import load_editor, shared_inversion_iters

    unet, schedule = load_toy_ddpm()
    judge = load_evaluator()
    editors = {e: load_editor(unet, edit=e) for e in edits}
    for name, (_, config) in editors.items():  # consistency across t compares at least two edited timesteps
        def edited(n: int) -> int:
            return sum(t >= config.t_edit for t in schedule.timesteps(n))

        if edited(num_steps) < 2:
            enough = next(n for n in range(num_steps + 1, schedule.T + 1) if edited(n) >= 2)
            raise ValueError(f"with {num_steps} DDIM steps the {name} editor (t_edit {config.t_edit}) edits "
                             f"{edited(num_steps)} timestep(s); homogeneity over t needs two or more: use "
                             f"--steps {enough} or more")
    # sampled with other step counts than trained: Δh × n_train / n_test, as `evaluate --steps` and the sliders do
    editors = {e: (ScaledEditor(editor, step_scale(config.num_steps, num_steps))
                   if config.num_steps != num_steps else editor, config) for e, (editor, config) in editors.items()}
    iters = shared_inversion_iters(config for _, config in editors.values())
    faces, _ = toy.sample(n, seed=seed, heldout=True)
    x_T = cached_inversion(unet, schedule, faces, num_steps, cache_dir(), progress=False,
                           fixed_point_iters=iters)
    train_faces, _ = toy.sample(n_global, seed=seed)
    train_x_T = cached_inversion(unet, schedule, train_faces, num_steps, cache_dir(), progress=False,
                                 fixed_point_iters=iters)
    groups = [g for g in (("smiling", "glasses"), ("smiling", "glasses", "tanned")) if set(g) <= set(edits)]
    bar = tqdm(total=1 + 3 * len(editors) + len(groups), desc="h-space report")
    base = unedited_judgement(unet, schedule, judge, x_T, num_steps)  # computed once, shared by every measurement
    bar.update()
    report: dict = {"n": n, "linearity": {}, "homogeneity": {}, "combinations": {}}
    solo = {}
    for name, (editor, config) in editors.items():
        attribute = TOY_EDITS[name]["attribute"]
        bar.set_postfix_str(f"{name}: linearity")
        lin = measure_linearity(unet, schedule, editor, config.t_edit, judge, attribute, x_T, num_steps, base=base)
        report["linearity"][name] = lin.__dict__
        solo[name] = lin.mean_change[lin.scales.index(1.0)]  # scale 1 is f_t itself
        bar.update()
        bar.set_postfix_str(f"{name}: global Δh")
        per_image = delta_h_along_trajectory(unet, schedule, editor, config.t_edit, train_x_T, num_steps)
        bar.update()
        effects = {"f_t": solo[name]}
        for label, dh in (("mean_over_images", global_delta_h(per_image)),
                          ("mean_over_images_and_t", global_delta_h(per_image, over_timesteps=True)),
                          ("mean_over_images_and_t_length_kept",
                           global_delta_h(per_image, over_timesteps=True, keep_norm=True))):
            effects[label] = mean_changes(unet, schedule, dh, config.t_edit, judge, x_T, [attribute], num_steps,
                                          base)[attribute]
        bar.update()
        ts, cos = timestep_cosines(global_delta_h(per_image))
        shares = {label: share(effects[label], effects["f_t"], NOISE_FLOOR)  # no effect of f_t: no share
                  for label in ("mean_over_images", "mean_over_images_and_t", "mean_over_images_and_t_length_kept")}
        report["homogeneity"][name] = {**effects, "share_images": shares["mean_over_images"],
                                       "share_images_and_t": shares["mean_over_images_and_t"],
                                       "share_images_and_t_length_kept": shares["mean_over_images_and_t_length_kept"],
                                       "mean_cos_across_t": float(cos[~torch.eye(len(ts), dtype=bool)].nanmean())}
    for group in groups:
        bar.set_postfix_str(" + ".join(group))
        parts = {g: (editors[g][0], editors[g][1].t_edit, TOY_EDITS[g]["attribute"]) for g in group}
        report["combinations"][" + ".join(group)] = combination_effects(unet, schedule, parts, judge, x_T, num_steps,
                                                                        base, solo, NOISE_FLOOR)
        bar.update()
    bar.close()
    return report
