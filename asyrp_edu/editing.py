"""Asyrp's reverse process with an editor: edit in [T, t_edit], plain DDIM to t_boost, stochastic below t_boost."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from .ddim import Schedule, StepOutput, ddim_step
from .hspace import DeltaH, asymmetric_step, check_supported
from .intervals import check_intervals


class ScaledEditor(torch.nn.Module):
    """f_t with its output scaled: Δh_t = scale · f_t(h_t, temb) (linearity: negative scales edit backwards).

    scale: one number, or a tensor (B,) with one scale per image of the batch (`generate_scaled`)."""

    def __init__(self, editor: Callable, scale: float | torch.Tensor = 1.0):
        super().__init__()
        self.editor = editor
        self.scale = scale.detach().flatten() if torch.is_tensor(scale) else float(scale)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """scale · f_t(h_t, temb)   (B, C_h, 8, 8)."""
        if not torch.is_tensor(self.scale):
            return self.scale * self.editor(h, temb)
        if self.scale.numel() != h.shape[0]:
            raise ValueError(f"{self.scale.numel()} scales for a batch of {h.shape[0]} images; give one each")
        dh = self.editor(h, temb)  # (B, C_h, 8, 8)
        # Δh of image i × scale_i     (B, 1, 1, 1) · (B, C_h, 8, 8)
        return self.scale.to(dh).view(-1, *([1] * (dh.ndim - 1))) * dh


class ConstantDeltaH(torch.nn.Module):
    """One learnable Δh shared by every image and timestep: Δh_t = Δh (the paper's global direction)."""

    def __init__(self, h_shape: tuple[int, int, int]):
        super().__init__()
        self.delta = torch.nn.Parameter(torch.zeros(1, *h_shape))  # (1, C_h, 8, 8)

    def forward(self, h: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """Δh broadcast to the batch: (B, C_h, 8, 8)."""
        return self.delta.expand_as(h)


class MixedEditor(torch.nn.Module):
    """A linear combination of editors: Δh_t = Σ_i c_i · f_t^i(h_t, temb) (the paper's combined attributes).

    t_edits: each editor's own t_edit. Editor i then edits only in its own interval [T, t_edit_i], as it was
    trained; `generate_edited` asks `active_at(t)` at every step. Editors without one edit at every edited step."""

    def __init__(self, editors: dict[str, Callable], coefficients: dict[str, float] | None = None,
                 t_edits: dict[str, int] | None = None):
        super().__init__()
        self.editors = dict(editors)
        # registered as submodules too, so that .to(), .eval() and .parameters() on the mix reach every editor
        self.modules_of_editors = torch.nn.ModuleList(e for e in self.editors.values()
                                                      if isinstance(e, torch.nn.Module))
        unknown = (set(coefficients or {}) | set(t_edits or {})) - set(self.editors)
        if unknown:
            raise KeyError(f"no editor named {sorted(unknown)}; the mixer has {sorted(self.editors)}")
        self.coefficients = {name: float((coefficients or {}).get(name, 0.0)) for name in self.editors}
        self.t_edits = {name: int(t) for name, t in (t_edits or {}).items()}

    def interval_end(self, T: int) -> int:
        """Where the mix stops editing: the smallest t_edit among editors with c_i ≠ 0 (0 for an editor without one;
        T − 1 when no editor edits), the t_edit to give `Intervals`."""
        return min((self.t_edits.get(name, 0) for name, c in self.coefficients.items() if c), default=T - 1)

    def active_at(self, t: int) -> "MixedEditor":
        """The mix at timestep t: editors whose interval [T, t_edit_i] does not contain t get coefficient 0."""
        coefficients = {name: c if t >= self.t_edits.get(name, 0) else 0.0 for name, c in self.coefficients.items()}
        return MixedEditor(self.editors, coefficients, self.t_edits)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Σ_i c_i · f_t^i(h_t, temb)   (B, C_h, 8, 8); editors with c_i = 0 are skipped."""
        total = torch.zeros_like(h)
        for name, editor in self.editors.items():
            if self.coefficients[name]:
                total = total + self.coefficients[name] * editor(h, temb)
        return total


def _active_at(dh, t: int):
    """The Δh module that edits at t: a mix (also a scaled one) keeps only the editors whose own interval [T, t_edit_i]
    holds t; None when nothing edits there (one plain U-Net pass)."""
    if isinstance(dh, ScaledEditor) and isinstance(dh.editor, MixedEditor):
        inner = _active_at(dh.editor, t)
        return None if inner is None else ScaledEditor(inner, dh.scale)
    if isinstance(dh, MixedEditor):
        dh = dh.active_at(t)
        return dh if any(dh.coefficients.values()) else None
    return dh


def step_scale(n_train_steps: int, n_test_steps: int) -> float:
    """Δh scaling when sampling with a different number of steps than training: Δh × n_train / n_test."""
    if n_train_steps < 1 or n_test_steps < 1:
        raise ValueError(f"step counts must be >= 1, got n_train={n_train_steps}, n_test={n_test_steps}")
    return n_train_steps / n_test_steps


@dataclass
class Intervals:
    """Where each kind of step runs: edit for t ≥ t_edit, plain DDIM down to t_boost, η = 1 below t_boost."""

    t_edit: int
    t_boost: int = 0
    T: int = 1000  # the model's number of training timesteps (schedule.T), which bounds both

    def __post_init__(self) -> None:
        check_intervals(self.t_edit, self.t_boost, self.T)

    def kind(self, t: int) -> str:
        """'edit', 'ddim' or 'boost' for timestep t."""
        return "edit" if t >= self.t_edit else ("ddim" if t >= self.t_boost else "boost")


@torch.no_grad()
def generate_edited(
    unet,
    x_T: torch.Tensor,
    schedule: Schedule,
    delta_h: DeltaH | dict[int, torch.Tensor],
    intervals: Intervals,
    num_steps: int = 40,
    symmetric: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[tuple[int, str, StepOutput]]]:
    """Asyrp sampling from an inverted x_T: asymmetric (or symmetric) edits in [T, t_edit], then DDIM, then boost.

    delta_h is f_t, a fixed Δh tensor, or a dict {t: Δh_t} (a per-timestep global direction; missing t: no edit).
    generator: the η = 1 noise below t_boost; by default seeded with 0, so that two runs from the same x_T (with
    and without an edit, say) get the same noise and differ only by the edit.
    """
    check_supported(unet)
    check_intervals(intervals.t_edit, intervals.t_boost, schedule.T)  # a model with T < 1000 would never edit
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    timesteps = schedule.timesteps(num_steps)
    if isinstance(delta_h, dict):  # measured per timestep: on this grid?
        edited = [t for t in timesteps if intervals.kind(t) == "edit"]
        missing = [t for t in edited if t not in delta_h]
        if len(missing) > len(edited) // 2:
            warnings.warn(f"the Δh dict has no entry for {len(missing)} of the {len(edited)} edited timesteps "
                          f"(e.g. t = {missing[:3]}), so those steps are not edited; sample with the {num_steps}-step "
                          "grid it was measured on, or measure it on this one", stacklevel=2)
    x, trajectory = x_T, []
    for i, t in enumerate(tqdm(timesteps, desc="Asyrp sampling", disable=not progress, leave=False)):
        t_prev, kind = schedule.previous(timesteps, i), intervals.kind(t)
        dh = delta_h.get(t) if isinstance(delta_h, dict) else delta_h
        dh = _active_at(dh, t)
        if kind == "edit" and dh is not None:
            out = asymmetric_step(unet, x, t, t_prev, schedule, dh, symmetric=symmetric)
        else:
            eta = 1.0 if kind == "boost" else 0.0
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype,  # where the generator lives
                                device=generator.device).to(x.device) if eta else None
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            eps = unet(x, tt).sample
            out = ddim_step(x, eps, eps, t, t_prev, schedule, eta=eta, noise=noise)
        trajectory.append((t, kind, out))
        x = out.prev_sample
    return (x, trajectory) if return_trajectory else x


@torch.no_grad()
def generate_scaled(unet, x_T: torch.Tensor, schedule: Schedule, editor: Callable, scales: list[float],
                    intervals: Intervals, num_steps: int = 40) -> list[torch.Tensor]:
    """`generate_edited` with Δh × s for each s in scales: one batch of images (B, C, H, W) per scale.

    Without quality boosting (t_boost = 0, as in the toy world) every scale runs in one batch of len(scales)·B: for
    a few faces a CPU computes that faster per image (4 faces × 5 scales: about 1.8 times on 2 cores; toy batches of
    24 or more gain nothing more). With boosting each scale runs alone, so that all scales get the same η = 1 noise
    (the default generator's)."""
    if intervals.t_boost > 0:
        return [generate_edited(unet, x_T, schedule, ScaledEditor(editor, s), intervals, num_steps) for s in scales]
    per_image = torch.tensor([float(s) for s in scales]).repeat_interleave(x_T.shape[0])  # (S·B,): s_1 … s_1, s_2 …
    # [x_T ; x_T ; …], once per scale      (S·B, C, H, W)
    out = generate_edited(unet, x_T.repeat(len(scales), *([1] * (x_T.ndim - 1))), schedule,
                          ScaledEditor(editor, per_image), intervals, num_steps)
    return list(out.chunk(len(scales)))


def edited_step_outputs(trajectory: list[tuple[int, str, StepOutput]]) -> list[StepOutput]:
    """Only the steps that edited h."""
    return [out for _, kind, out in trajectory if kind == "edit"]
