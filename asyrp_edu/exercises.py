"""Checks for the notebooks' exercises: each compares a student's function with the library's and explains."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import torch

from .ddim import Schedule, ddim_sigma, direction_to_xt, predict_x0, q_sample


@dataclass
class Verdict:
    """The outcome of one check; shows as ✅/❌ with the reason in a notebook."""

    passed: bool
    message: str

    def __repr__(self) -> str:
        return ("✅ right: " if self.passed else "❌ not yet: ") + self.message

    def __bool__(self) -> bool:
        return self.passed


# What a crash inside the student's function usually means, by the exception's type
FLOAT_ALPHA_BAR = ("alpha_bar_t is a Python float here, and torch.sqrt takes tensors only: write (1 - a) ** 0.5 "
                   "or math.sqrt(1 - a)")


def _answer(student_fn: Callable, args: tuple, crash_hints: dict[str, str]) -> object:
    """student_fn(*args), or, when it raises, a failed Verdict saying why; crash_hints: {text in the error's
    message: the usual cause}."""
    try:
        return student_fn(*args)
    except Exception as error:  # a student's bug can raise anything; the check must still answer
        hint = next((h for text, h in crash_hints.items() if text in str(error)), "")
        return Verdict(False, f"your function raised {type(error).__name__}: {error}" + (f"; {hint}" if hint else ""))


def _compare(got, expected: torch.Tensor, hints: dict[str, torch.Tensor], what: str) -> Verdict:
    """Right if got ≈ expected; otherwise name the known mistake it matches, or the size of the error."""
    if isinstance(got, Verdict):  # the student's function crashed: `_answer` already explained why
        return got
    if got is None:
        return Verdict(False, f"your function returned None; `return` the {what}")
    if type(got).__module__ == "numpy" and hasattr(got, "shape"):  # a numpy array is an answer too
        got = torch.as_tensor(got)
    if not isinstance(got, torch.Tensor):
        return Verdict(False, f"return a torch.Tensor, not {type(got).__name__}")
    if got.dim() == 0 and expected.dim() > 0:
        return Verdict(False, f"you returned one number; return the {what} for every entry, shape "
                              f"{tuple(expected.shape)} (did you take a mean or a sum?)")
    if got.shape != expected.shape:
        return Verdict(False, f"shape {tuple(got.shape)} should be {tuple(expected.shape)}")
    got = got.to(expected.dtype)  # a float32 answer to a float64 question is still an answer
    if torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
        return Verdict(True, f"your {what} matches the reference")
    for mistake, wrong in hints.items():
        if torch.allclose(got, wrong, atol=1e-5, rtol=1e-4):
            return Verdict(False, mistake)
    err = float((got - expected).abs().max())
    return Verdict(False, f"your {what} is off by up to {err:.3g}; compare each term with the equation above")


def _example(seed: int = 0):
    """A reproducible (x, ε) pair and a schedule for the checks."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g), Schedule.linear()


def check_alpha_bar(student_fn: Callable[[torch.Tensor], torch.Tensor]) -> Verdict:
    """Exercise: alpha_bar from betas (T,) -> (T,)."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    expected = torch.cumprod(1 - betas, 0)
    hints = {"you returned Π β_s; alpha_bar is the product of alpha_s = 1 − β_s": torch.cumprod(betas, 0),
             "you returned 1 − β_t; alpha_bar multiplies all alphas up to t (torch.cumprod)": 1 - betas}
    got = _answer(student_fn, (betas,), {})
    return _compare(got, expected, hints, "alpha_bar")


def check_q_sample(student_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                   ) -> Verdict:
    """Exercise: student_fn(x0, t, eps, alpha_bar) -> x_t of the forward process."""
    x0, eps, schedule = _example()
    t = torch.tensor([0, 250, 500, 999])
    alpha_bar = schedule.alpha_bar.float()
    a = alpha_bar[t].view(-1, 1, 1, 1)
    expected = q_sample(x0, t, eps, schedule)
    hints = {"the weights need square roots: sqrt(alpha_bar_t) and sqrt(1 − alpha_bar_t)":
             a * x0 + (1 - a) * eps,
             "the noise weight is sqrt(1 − alpha_bar_t), with the square root": a.sqrt() * x0 + (1 - a) * eps,
             "the image weight is sqrt(alpha_bar_t), with the square root": a * x0 + (1 - a).sqrt() * eps,
             "x0 and ε are swapped: the clean image gets sqrt(alpha_bar_t)": a.sqrt() * eps + (1 - a).sqrt() * x0}
    broadcast = ("alpha_bar[t] has shape (B,) and x0 (B, C, H, W): reshape it with alpha_bar[t].view(-1, 1, 1, 1) "
                 "so that it broadcasts over C, H and W")
    got = _answer(student_fn, (x0, t, eps, alpha_bar), {"must match the size of tensor": broadcast})
    return _compare(got, expected, hints, "x_t")


def check_predict_x0(student_fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> Verdict:
    """Exercise: student_fn(x_t, eps, alpha_bar_t) -> P_t."""
    x_t, eps, schedule = _example(1)
    a = schedule.at(600)
    expected = predict_x0(x_t, eps, a)
    hints = {"divide by sqrt(alpha_bar_t), not alpha_bar_t": (x_t - (1 - a) ** 0.5 * eps) / a,
             "the noise term is sqrt(1 − alpha_bar_t)·ε, with the square root": (x_t - (1 - a) * eps) / a**0.5,
             "P_t subtracts the noise: x_t − sqrt(1 − alpha_bar_t)·ε": (x_t + (1 - a) ** 0.5 * eps) / a**0.5}
    got = _answer(student_fn, (x_t, eps, a), {"must be Tensor, not float": FLOAT_ALPHA_BAR})
    return _compare(got, expected, hints, "P_t")


def check_direction_to_xt(student_fn: Callable[[torch.Tensor, float, float], torch.Tensor]) -> Verdict:
    """Exercise: student_fn(eps, alpha_bar_prev, sigma) -> D_t."""
    _, eps, schedule = _example(2)
    a_prev = schedule.at(400)
    sigma = ddim_sigma(schedule.at(420), a_prev, 1.0)
    expected = direction_to_xt(eps, a_prev, sigma)
    hints = {"σ_t enters squared: sqrt(1 − alpha_bar_{t−1} − σ_t²)": (1 - a_prev - sigma) ** 0.5 * eps,
             "you left out σ_t: with η > 0 part of the noise is fresh, so D_t shrinks": (1 - a_prev) ** 0.5 * eps}
    got = _answer(student_fn, (eps, a_prev, sigma), {"must be Tensor, not float": FLOAT_ALPHA_BAR})
    return _compare(got, expected, hints, "D_t")


def check_asymmetric_step(student_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float],
                                               torch.Tensor]) -> Verdict:
    """Exercise: student_fn(x_t, eps, eps_edit, alpha_bar_t, alpha_bar_prev) -> x_{t-1} of Asyrp (η = 0)."""
    x_t, eps, schedule = _example(3)
    eps_edit = eps + 0.3 * torch.randn(eps.shape, generator=torch.Generator().manual_seed(9))
    a, a_prev = schedule.at(700), schedule.at(675)

    def step(e_p: torch.Tensor, e_d: torch.Tensor) -> torch.Tensor:
        return a_prev**0.5 * predict_x0(x_t, e_p, a) + direction_to_xt(e_d, a_prev, 0.0)

    hints = {"that is the symmetric step: give ε(x_t | Δh) to P_t only; D_t keeps the unedited ε":
             step(eps_edit, eps_edit),
             "P_t and D_t are swapped: the edited ε goes into P_t, the unedited one into D_t": step(eps, eps_edit),
             "that is the unedited step: P_t should use the edited ε": step(eps, eps)}
    got = _answer(student_fn, (x_t, eps, eps_edit, a, a_prev), {"must be Tensor, not float": FLOAT_ALPHA_BAR})
    return _compare(got, step(eps_edit, eps), hints, "x_{t-1}")


def check_directional_loss(student_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                           ) -> Verdict:
    """Exercise: student_fn(e_edit, e_source, delta_T) -> 1 − cos(ΔI, ΔT) per image, (B,)."""
    g = torch.Generator().manual_seed(4)
    e_edit, e_source = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    delta_T = torch.randn(16, generator=g)
    norm = torch.nn.functional.normalize
    delta_I = norm(e_edit, dim=-1) - norm(e_source, dim=-1)
    expected = 1 - torch.nn.functional.cosine_similarity(delta_I, delta_T[None], dim=-1)
    hints = {"that is cos(ΔI, ΔT) itself, a similarity; the loss is 1 − cos":
             1 - expected,
             "ΔI compares the edited with the source image: E_I(edit) − E_I(source), not the edited image alone":
             1 - torch.nn.functional.cosine_similarity(e_edit, delta_T[None], dim=-1),
             "normalise each embedding before subtracting (CLIP compares directions on the unit sphere)":
             1 - torch.nn.functional.cosine_similarity(e_edit - e_source, delta_T[None], dim=-1)}
    return _compare(_answer(student_fn, (e_edit, e_source, delta_T), {}), expected, hints, "directional loss")


def check_t_edit(student_fn: Callable[[list[int], list[float], float], int]) -> Verdict:
    """Exercise: student_fn(ts ascending, distances, text_cosine) -> t_edit by the paper's 0.33·cos rule."""
    ts = list(range(0, 1000, 50))
    distances = [min(1.0, (t / 1000) ** 1.5 * 1.2) for t in ts]
    cos = 0.8
    expected = next(t for t, d in zip(ts, distances) if d >= 0.33 * cos)
    got = student_fn(ts, distances, cos)
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
        got = got.item()  # a 0-d integer tensor
    if isinstance(got, numbers.Integral) and not isinstance(got, bool):
        got = int(got)  # numpy's int64 too
    if not isinstance(got, int):
        return Verdict(False, f"return the timestep as an int, not {type(got).__name__}")
    if got == expected:
        return Verdict(True, f"t_edit = {got}: the first t whose LPIPS(x0, P_t) reaches 0.33·cos = {0.33 * cos:.3f}")
    if got == next(t for t, d in zip(ts, distances) if d >= 0.33):
        return Verdict(False, "multiply the threshold by the text cosine: 0.33 · cos(E_T(source), E_T(target))")
    if got == max(t for t, d in zip(ts, distances) if d < 0.33 * cos):
        return Verdict(False, "that is the last t *below* the threshold; t_edit is the first t that reaches it")
    return Verdict(False, f"t_edit should be {expected}: the smallest t with distance ≥ 0.33·cos ({0.33 * cos:.3f})")


def check_step_scale(student_fn: Callable[[int, int], float]) -> Verdict:
    """Exercise: student_fn(n_train, n_test) -> the factor for Δh when sampling with n_test instead of n_train steps."""
    cases = [(40, 20), (40, 80), (50, 10)]
    got = [student_fn(a, b) for a, b in cases]
    # numpy numbers and 0-d tensors are numbers too
    got = [float(g) if isinstance(g, torch.Tensor) and g.dim() == 0 else g for g in got]
    if any(isinstance(g, bool) or not isinstance(g, numbers.Real) for g in got):
        return Verdict(False, "return a number (the factor Δh is multiplied by)")
    if all(abs(g - a / b) < 1e-6 for g, (a, b) in zip(got, cases)):
        return Verdict(True, "fewer steps → each step must move further: Δh × n_train / n_test")
    if all(abs(g - b / a) < 1e-6 for g, (a, b) in zip(got, cases)):
        return Verdict(False, "upside down: with fewer test steps each step carries more of the edit, so the "
                              "factor must grow (n_train / n_test)")
    (a, b), g = next(((a, b), g) for (a, b), g in zip(cases, got) if not abs(g - a / b) < 1e-6)  # first wrong (or NaN)
    hint = " (integer division? use /, not //)" if g == a // b else ""
    return Verdict(False, f"for (n_train, n_test) = {(a, b)} the factor is {a / b}, you returned {g}{hint}")


def check_mixed_delta(student_fn: Callable[[list[torch.Tensor], list[float]], torch.Tensor]) -> Verdict:
    """Exercise: student_fn([Δh_1, Δh_2, …], [c_1, c_2, …]) -> Σ c_i·Δh_i."""
    g = torch.Generator().manual_seed(5)
    deltas, coeffs = [torch.randn(2, 8, 4, 4, generator=g) for _ in range(3)], [1.0, -0.5, 2.0]
    expected = sum(c * d for c, d in zip(coeffs, deltas))
    hints = {"weight each Δh_i by its coefficient c_i before adding": sum(deltas),
             "the paper adds the directions (Σ c_i·Δh_i); it does not average them": expected / 3}
    return _compare(_answer(student_fn, (deltas, coeffs), {}), expected, hints, "combined Δh")


def check_latent_scaling(student_fn: Callable[[torch.Tensor, float, float], torch.Tensor]) -> Verdict:
    """Exercise: student_fn(E(x), scale, shift) -> the latent the U-Net sees, z = (E(x) − shift) · scale."""
    g = torch.Generator().manual_seed(6)
    raw, scale, shift = torch.randn(2, 4, 8, 8, generator=g) * 3 + 0.5, 0.4, 0.5
    expected = (raw - shift) * scale
    hints = {"subtract the shift before scaling: (E(x) − shift) · scale": raw * scale - shift,
             "multiply by the scale (it shrinks a wide latent to unit spread), do not divide": (raw - shift) / scale,
             "that is the way back (z / scale + shift), which the decoder applies": raw / scale + shift}
    return _compare(_answer(student_fn, (raw, scale, shift), {}), expected, hints, "latent z")


def check_decoded_P_t(student_fn: Callable[[torch.Tensor, torch.Tensor, float, Callable], torch.Tensor]) -> Verdict:
    """Exercise: student_fn(z_t, eps, alpha_bar_t, decode) -> the image the CLIP loss sees: D(P_t) of the latent."""
    g = torch.Generator().manual_seed(7)
    z_t, eps, a = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), 0.3
    weights = torch.randn(3, 4, generator=g)

    def decode(z: torch.Tensor) -> torch.Tensor:  # a stand-in decoder: a fixed 1×1 conv, tanh, ×2 upsampling
        # not linear, like a real decoder: decoding z_t and ε apart and combining the images gives another result
        return torch.nn.functional.interpolate(torch.tanh(torch.einsum("oc,bchw->bohw", weights, z)), scale_factor=2)

    expected = decode(predict_x0(z_t, eps, a))
    hints = {"decode P_t, not z_t: the loss judges the predicted clean image": decode(z_t),
             "P_t = (z_t − sqrt(1 − alpha_bar)·ε) / sqrt(alpha_bar), then decode it":
             decode((z_t - (1 - a) * eps) / a),
             "combine the latents first, then decode once: the decoder is not linear, so decoding z_t and ε apart "
             "gives another image": (decode(z_t) - (1 - a) ** 0.5 * decode(eps)) / a ** 0.5}
    got = _answer(student_fn, (z_t, eps, a, decode), {"must be Tensor, not float": FLOAT_ALPHA_BAR})
    return _compare(got, expected, hints, "decoded P_t")
