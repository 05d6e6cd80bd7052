"""Our DDIM core against diffusers' DDIMScheduler, a reference no one here wrote."""
import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from asyrp_edu.ddim import (Schedule, ddim_generate, ddim_invert, ddim_step, predict_x0, unet_noise_model)


def _reference_scheduler(num_steps: int, clip: bool) -> DDIMScheduler:
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              clip_sample=clip, set_alpha_to_one=True, steps_offset=0)
    scheduler.set_timesteps(num_steps)
    return scheduler


def test_schedule_and_grid_match_diffusers():
    ours = Schedule.linear()
    ref = _reference_scheduler(50, clip=True)
    assert torch.allclose(ours.alpha_bar.float(), ref.alphas_cumprod, atol=1e-7)
    assert ours.timesteps(50) == ref.timesteps.tolist()
    assert Schedule.from_diffusers(ref).alpha_bar.shape == (1000,)


def test_schedules_we_cannot_follow_are_refused_or_named():
    from diffusers import DDIMScheduler

    with pytest.raises(ValueError, match="predicts 'v_prediction'.*'epsilon'"):
        Schedule.from_diffusers(DDIMScheduler(prediction_type="v_prediction"))
    with pytest.warns(UserWarning, match="steps_offset"):
        Schedule.from_diffusers(DDIMScheduler(steps_offset=1))
    with pytest.warns(UserWarning, match="set_alpha_to_one"):
        Schedule.from_diffusers(DDIMScheduler(set_alpha_to_one=False))
    with pytest.warns(UserWarning, match="timestep_spacing"):
        Schedule.from_diffusers(DDIMScheduler(timestep_spacing="trailing"))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
def test_single_steps_match_diffusers(eta, clip):
    torch.manual_seed(1)
    ours, ref = Schedule.linear(), _reference_scheduler(20, clip=clip)
    timesteps = ours.timesteps(20)
    for i, t in enumerate(timesteps):
        x_t, eps, z = torch.randn(3, 2, 3, 8, 8)
        expected = ref.step(eps, t, x_t, eta=eta, variance_noise=z if eta > 0 else None)
        got = ddim_step(x_t, eps, eps, t, ours.previous(timesteps, i), ours, eta=eta, noise=z, clip_x0=clip)
        assert torch.allclose(got.prev_sample, expected.prev_sample, atol=1e-5), (t, eta)
        assert torch.allclose(got.P_t, expected.pred_original_sample, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_full_trajectory_matches_diffusers(tiny_unet, eta):
    ref = _reference_scheduler(10, clip=True)
    ours = Schedule.from_diffusers(ref)  # the same float32 alpha_bar: this compares the stepping alone
    # float64 so that round-off, amplified by a random network over many steps, cannot hide or fake a difference
    tiny_unet = tiny_unet.double()
    model = unet_noise_model(tiny_unet)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = ddim_generate(model, x_T, ours, num_steps=10, eta=eta, generator=torch.Generator().manual_seed(4),
                        progress=False)
    g, x = torch.Generator().manual_seed(4), x_T
    with torch.no_grad():
        for t in ref.timesteps:
            eps = tiny_unet(x, t).sample
            z = torch.randn(x.shape, generator=g, dtype=x.dtype) if eta > 0 else None
            x = ref.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
    assert (got - x).abs().max() < 1e-5


def test_asymmetric_step_uses_edited_noise_only_for_P_t():
    ours = Schedule.linear()
    x_t, eps, eps_edit = torch.randn(3, 1, 3, 4, 4)
    plain = ddim_step(x_t, eps, eps, 500, 480, ours)
    asym = ddim_step(x_t, eps_edit, eps, 500, 480, ours)
    assert torch.allclose(asym.D_t, plain.D_t)
    assert torch.allclose(asym.P_t, predict_x0(x_t, eps_edit, ours.at(500)))
    assert not torch.allclose(asym.prev_sample, plain.prev_sample)


def gaussian_optimal_eps(schedule: Schedule, mean: torch.Tensor, std: float):
    """The exact ε-predictor for data x0 ~ N(mean, std² I): E[ε | x_t], known in closed form."""

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = schedule.alpha_bar[t].to(x_t.dtype).view(-1, 1, 1, 1)
        # E[ε | x_t] = sqrt(1 − ā) · (x_t − sqrt(ā) μ) / (ā s² + 1 − ā)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mean) / (a * std**2 + 1 - a)

    return eps


def test_inversion_reconstruction_error_falls_with_steps():
    from asyrp_edu import toy

    ours = Schedule.linear()
    x0, _ = toy.sample(4, seed=5, size=16)
    model = gaussian_optimal_eps(ours, mean=x0.mean(0, keepdim=True), std=0.5)
    errors = []
    for n in (5, 10, 20, 50):
        x_T = ddim_invert(model, x0, ours, num_steps=n, progress=False)
        rec = ddim_generate(model, x_T, ours, num_steps=n, clip_x0=False, progress=False)
        errors.append(float((rec - x0).pow(2).mean()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.2 * errors[0], errors


def test_plain_inversion_matches_diffusers_inverse_scheduler(tiny_unet):
    # DDIMInverseScheduler.step(ε, t, x_s) goes from s = t − T/n up to t; we feed it ε_θ(x_s, s), as we invert
    ref = DDIMInverseScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                               clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    ref.set_timesteps(10)
    ours = Schedule.from_diffusers(ref)
    tiny_unet = tiny_unet.double()
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    got, trajectory = ddim_invert(unet_noise_model(tiny_unet), x0, ours, num_steps=10, progress=False,
                                  return_trajectory=True)
    assert ref.timesteps.tolist() == list(reversed(ours.timesteps(10)))
    x = x0
    with torch.no_grad():
        for i, t in enumerate(ref.timesteps.tolist()):
            s = max(t - 100, 0)
            x = ref.step(tiny_unet(x, s).sample, t, x).prev_sample
            assert (trajectory[i + 1] - x).abs().max() < 1e-6, t
    assert (got - x).abs().max() < 1e-6


def test_fixed_point_inversion_retraces_ddim_sampling():
    from asyrp_edu import toy

    ours = Schedule.linear()
    x0, _ = toy.sample(4, seed=5, size=16)
    model = gaussian_optimal_eps(ours, mean=x0.mean(0, keepdim=True), std=0.5)
    errors = {}
    for iters in (0, 1, 3):
        x_T = ddim_invert(model, x0, ours, num_steps=10, progress=False, fixed_point_iters=iters)
        rec = ddim_generate(model, x_T, ours, num_steps=10, clip_x0=False, progress=False)
        errors[iters] = float((rec - x0).pow(2).mean())
    assert errors[0] > 1e-4, errors  # plain inversion is visibly inexact at 10 steps
    assert errors[1] < 0.5 * errors[0] and errors[3] < 0.01 * errors[0], errors
    with pytest.raises(ValueError, match="fixed_point_iters"):
        ddim_invert(model, x0, ours, num_steps=10, progress=False, fixed_point_iters=-1)


def test_eta_positive_without_noise_is_an_error():
    with pytest.raises(ValueError, match="noise"):
        ddim_step(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), 500, 480,
                  Schedule.linear(), eta=1.0)
