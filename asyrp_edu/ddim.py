"""DDPM schedule and DDIM sampling/inversion, written so that P_t and D_t can take different noise predictions.

Notation (Song et al. 2021, eq. 12; Kwon et al. 2023, eq. 1 and 2):

    x_{t-1} = sqrt(alpha_bar_{t-1}) · P_t(ε) + D_t(ε) + σ_t z
    P_t(ε)  = (x_t − sqrt(1 − alpha_bar_t) · ε) / sqrt(alpha_bar_t)          predicted x0
    D_t(ε)  = sqrt(1 − alpha_bar_{t-1} − σ_t²) · ε                          direction pointing to x_t
    σ_t     = η · sqrt((1 − alpha_bar_{t-1}) / (1 − alpha_bar_t)) · sqrt(1 − alpha_bar_t / alpha_bar_{t-1})

Asyrp plugs in at `ddim_step`, which takes one ε for P_t and another for D_t.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .checks import check_images

# A noise predictor ε_θ(x_t, t): images (B, C, H, W) and integer timesteps (B,) -> noise (B, C, H, W).
NoiseModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Fixed-point iterations per inversion step (see `ddim_invert`) for the toy pixel DDPM: its shipped editors were
# trained on such inversions. Editors record theirs (`EditorConfig.inversion_iters`; the authors' inverted plainly).
INVERSION_FIXED_POINT_ITERS = 2


@dataclass
class Schedule:
    """The cumulative products alpha_bar_t of a DDPM noise schedule, indexed by t = 0 … T−1."""

    alpha_bar: torch.Tensor  # (T,) float64

    @classmethod
    def linear(cls, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """The DDPM schedule of Ho et al. 2020: β linear from beta_start to beta_end."""
        # β_t = linspace(β_1, β_T, T)
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        # alpha_bar_t = Π_{s ≤ t} (1 − β_s)
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def from_diffusers(cls, scheduler) -> "Schedule":
        """Take alpha_bar from any diffusers scheduler (DDPMScheduler, DDIMScheduler, …) of an ε-predicting model.

        Only alpha_bar is taken: the DDIM grid stays ours (`timesteps`, diffusers' "leading" spacing) and the step
        past t = 0 lands on ᾱ = 1, so a scheduler configured otherwise (steps_offset, set_alpha_to_one=False,
        another timestep_spacing) gives slightly other samples; a warning says so."""
        config = getattr(scheduler, "config", {})
        prediction = config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(f"this model predicts {prediction!r}; Asyrp's P_t and D_t here need a model that "
                             "predicts the noise ε (prediction_type 'epsilon')")
        ignored = {k: config.get(k) for k, default in (("steps_offset", 0), ("set_alpha_to_one", True),
                                                       ("timestep_spacing", "leading"))
                   if config.get(k, default) != default}
        if ignored:
            import warnings

            warnings.warn(f"the scheduler's {ignored} are not used: asyrp_edu's DDIM takes only alpha_bar from it, "
                          "so samples differ slightly from the diffusers pipeline's", UserWarning, stacklevel=2)
        return cls(scheduler.alphas_cumprod.to(torch.float64).clone())

    @property
    def T(self) -> int:
        """Number of training timesteps."""
        return int(self.alpha_bar.numel())

    def at(self, t: int) -> float:
        """alpha_bar_t, with alpha_bar_{-1} = 1 (a clean image) for the step past t = 0."""
        if t < 0:
            return 1.0
        if t >= self.T:
            raise ValueError(f"timestep {t} is outside [0, {self.T - 1}]; use a timestep below T = {self.T}")
        return float(self.alpha_bar[t])

    def timesteps(self, num_steps: int) -> list[int]:
        """Descending DDIM grid, spaced as diffusers' DDIMScheduler ('leading'): [T−T/n, …, T/n, 0]."""
        if not 1 <= num_steps <= self.T:
            raise ValueError(f"num_steps={num_steps} must be between 1 and T = {self.T}")
        step_ratio = self.T // num_steps
        return [i * step_ratio for i in reversed(range(num_steps))]

    def previous(self, timesteps: Sequence[int], i: int) -> int:
        """The timestep after timesteps[i] on a descending grid (−1 after the last: the clean image)."""
        return timesteps[i + 1] if i + 1 < len(timesteps) else -1


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The forward process q(x_t | x_0): noise clean images x0 (B, C, H, W) to timesteps t (B,)."""
    a = schedule.alpha_bar.to(x0.device, x0.dtype)[t].view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1)
    # x_t = sqrt(alpha_bar_t) · x_0 + sqrt(1 − alpha_bar_t) · ε
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
    """P_t: the clean image predicted from x_t and ε."""
    # P_t = (x_t − sqrt(1 − alpha_bar_t) · ε) / sqrt(alpha_bar_t)
    return (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5


def ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    """σ_t(η): 0 for deterministic DDIM, the DDPM posterior standard deviation for η = 1."""
    # σ_t = η · sqrt((1 − alpha_bar_{t-1}) / (1 − alpha_bar_t)) · sqrt(1 − alpha_bar_t / alpha_bar_{t-1})
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)) ** 0.5 * (1 - alpha_bar_t / alpha_bar_prev) ** 0.5


def direction_to_xt(eps: torch.Tensor, alpha_bar_prev: float, sigma: float) -> torch.Tensor:
    """D_t: the part of x_{t-1} that points back towards x_t."""
    # D_t = sqrt(1 − alpha_bar_{t-1} − σ_t²) · ε
    return max(1 - alpha_bar_prev - sigma**2, 0.0) ** 0.5 * eps


@dataclass
class StepOutput:
    """One DDIM step: the next sample and the two terms it was built from."""

    prev_sample: torch.Tensor  # x_{t-1}      (B, C, H, W)
    P_t: torch.Tensor  # predicted x0         (B, C, H, W)
    D_t: torch.Tensor  # direction to x_t     (B, C, H, W)


def ddim_step(
    x_t: torch.Tensor,
    eps_for_P: torch.Tensor,
    eps_for_D: torch.Tensor,
    t: int,
    t_prev: int,
    schedule: Schedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: bool = False,
) -> StepOutput:
    """One reverse step t -> t_prev; P_t and D_t may use different ε (Asyrp's asymmetric reverse process)."""
    alpha_bar_t, alpha_bar_prev = schedule.at(t), schedule.at(t_prev)
    P_t = predict_x0(x_t, eps_for_P, alpha_bar_t)
    if clip_x0:
        P_t = P_t.clamp(-1.0, 1.0)
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
    D_t = direction_to_xt(eps_for_D, alpha_bar_prev, sigma)
    # x_{t-1} = sqrt(alpha_bar_{t-1}) · P_t + D_t + σ_t z
    x_prev = alpha_bar_prev**0.5 * P_t + D_t
    if sigma > 0:
        if noise is None:
            raise ValueError("eta > 0 needs noise z for this step; pass noise=torch.randn_like(x_t)")
        x_prev = x_prev + sigma * noise
    return StepOutput(x_prev, P_t, D_t)


def ddim_inversion_step(x_s: torch.Tensor, eps: torch.Tensor, s: int, t: int, schedule: Schedule) -> torch.Tensor:
    """Deterministic DDIM inversion from timestep s up to t > s, with ε = ε_θ(x_s, s)."""
    P = predict_x0(x_s, eps, schedule.at(s))
    # x_t = sqrt(alpha_bar_t) · P_s + sqrt(1 − alpha_bar_t) · ε
    return schedule.at(t) ** 0.5 * P + (1 - schedule.at(t)) ** 0.5 * eps


def _timestep_batch(t: int, x: torch.Tensor) -> torch.Tensor:
    """The integer timestep t repeated for every image of the batch: (B,)."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


@torch.no_grad()
def ddim_invert(
    model: NoiseModel,
    x0: torch.Tensor,
    schedule: Schedule,
    num_steps: int = 40,
    progress: bool = True,
    return_trajectory: bool = False,
    latent: bool = False,
    fixed_point_iters: int = 0,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Deterministic DDIM inversion x0 -> x_T on the grid of `Schedule.timesteps` (never clipped).

    latent=True: x0 are an LDM's latents z0, which need not lie in [-1, 1].
    fixed_point_iters=0 is plain DDIM inversion (Song et al.; the authors' code; diffusers' DDIMInverseScheduler):
    it uses ε_θ(x_s, s) where the reverse step t -> s will use ε_θ(x_t, t). Each extra iteration re-solves
    x_t with ε_θ(x_t, t) of the current guess (one more U-Net pass per step), so that DDIM sampling
    retraces the inversion almost exactly.
    """
    check_images(x0, channels=x0.shape[1] if x0.ndim == 4 else 3, name="x0", check_range=not latent)
    if fixed_point_iters < 0:
        raise ValueError(f"fixed_point_iters must be 0 (plain DDIM inversion) or more, got {fixed_point_iters}")
    grid = list(reversed(schedule.timesteps(num_steps)))  # ascending [0, …, T − T/n]
    x, s = x0, -1
    trajectory = [x0]
    for t in tqdm(grid, desc="DDIM inversion", disable=not progress, leave=False):
        eps = model(x, _timestep_batch(max(s, 0), x))  # ε_θ(x_s, s), s = 0 for the clean image
        x_t = ddim_inversion_step(x, eps, s, t, schedule)
        for _ in range(fixed_point_iters):
            # x_t = sqrt(alpha_bar_t) · P_s(ε_θ(x_t, t)) + sqrt(1 − alpha_bar_t) · ε_θ(x_t, t): the step t -> s undone
            x_t = ddim_inversion_step(x, model(x_t, _timestep_batch(t, x)), s, t, schedule)
        x = x_t
        trajectory.append(x)
        s = t
    return (x, trajectory) if return_trajectory else x


@torch.no_grad()
def ddim_generate(
    model: NoiseModel,
    x_T: torch.Tensor,
    schedule: Schedule,
    num_steps: int = 50,
    eta: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[tuple[int, StepOutput]]]:
    """DDIM sampling x_T -> x0; clip_x0=True for pure noise, False to reconstruct an inversion exactly."""
    timesteps = schedule.timesteps(num_steps)
    x = x_T
    steps: list[tuple[int, StepOutput]] = []
    for i, t in enumerate(tqdm(timesteps, desc="DDIM sampling", disable=not progress, leave=False)):
        eps = model(x, _timestep_batch(t, x))
        noise = None
        if eta > 0:
            # drawn where the generator lives (CPU by default, so seeds give the same noise on every device)
            where = generator.device if generator is not None else "cpu"
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=where).to(x.device)
        out = ddim_step(x, eps, eps, t, schedule.previous(timesteps, i), schedule, eta, noise, clip_x0)
        x = out.prev_sample
        steps.append((t, out))
    return (x, steps) if return_trajectory else x


def unet_noise_model(unet) -> NoiseModel:
    """Wrap a diffusers UNet2DModel as ε_θ(x_t, t)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t).sample

    return eps
