"""f_t training on a tiny random U-Net with a hand-made 'CLIP' (mean colour): runs, resumes, fails clearly."""
import copy

import pytest
import torch

from asyrp_edu.ddim import Schedule
from asyrp_edu.editing import Intervals, ScaledEditor, generate_edited, generate_scaled, step_scale
from asyrp_edu.train_asyrp import EDITOR_FILE, EditorConfig, train_editor


class ColourClip:
    """'red' / 'green' texts and mean-colour image features."""

    def encode_text(self, prompts):
        table = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}
        return torch.tensor([table[p] for p in prompts])

    def encode_image(self, images):
        return torch.nn.functional.normalize(images.mean(dim=(2, 3)) + 1.5, dim=-1)


@pytest.fixture
def setup(tiny_unet):
    tiny_unet.requires_grad_(False)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    config = EditorConfig(source="red", target="green", t_edit=300, num_steps=8, batch_size=2, lr=1e-2)
    return tiny_unet, Schedule.linear(), images, config


def test_training_moves_features_along_the_direction_and_saves(setup, tmp_path):
    unet, schedule, images, config = setup
    config.epochs, config.batch_size = 3, 4
    result = train_editor(unet, schedule, ColourClip(), images, config, tmp_path, progress=False)
    assert (tmp_path / EDITOR_FILE).is_file()
    assert len(result.losses) == 3 * 5  # 3 epochs × 1 batch × 5 edited timesteps (875 … 375 ≥ t_edit = 300)
    first, last = sum(result.s_dir[:5]) / 5, sum(result.s_dir[-5:]) / 5
    assert last > first + 0.2, result.s_dir  # P_t^edit moves along ΔT: S_dir = cos(ΔI, ΔT) rises
    x_T = torch.randn(2, 3, 16, 16)
    edited = generate_edited(unet, x_T, schedule, result.editor, Intervals(300, 0), num_steps=8)
    plain = generate_edited(unet, x_T, schedule, None, Intervals(300, 0), num_steps=8)
    assert not torch.allclose(edited, plain)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_resume_continues_where_it_stopped(setup, tmp_path):
    unet, schedule, images, config = setup
    config.epochs = 2
    full = train_editor(unet, schedule, ColourClip(), images, config, tmp_path / "a", progress=False)
    config.epochs = 1
    train_editor(unet, schedule, ColourClip(), images, config, tmp_path / "b", progress=False)
    config.epochs = 2
    resumed = train_editor(unet, schedule, ColourClip(), images, config, tmp_path / "b", progress=False)
    assert len(resumed.losses) == len(full.losses) // 2
    for p, q in zip(full.editor.parameters(), resumed.editor.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_resume_refuses_a_run_with_other_settings(setup, tmp_path):
    """A folder left by another edit is not resumed silently (it would carry on that run's f_t and step count)."""
    unet, schedule, images, config = setup
    train_editor(unet, schedule, ColourClip(), images, config, tmp_path, progress=False)
    config.target = "blue"
    with pytest.raises(ValueError, match="target: 'green' -> 'blue'.*--no-resume"):
        train_editor(unet, schedule, ColourClip(), images, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="n_images: 4 -> 2"):
        config.target = "green"
        train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="schedule: '"):  # another noise schedule: other x_t, another run
        train_editor(unet, Schedule.linear(beta_end=0.012), ColourClip(), images, config, tmp_path, progress=False)
    other_images = images.flip(0)  # the same images in another order: another run
    with pytest.raises(ValueError, match="images: '"):
        train_editor(unet, schedule, ColourClip(), other_images, config, tmp_path, progress=False)
    with torch.no_grad():
        next(unet.parameters()).add_(0.01)  # another model of the same shape
    with pytest.raises(ValueError, match="unet: '"):
        train_editor(unet, schedule, ColourClip(), images, config, tmp_path, progress=False)
    config.target = "blue"
    fresh = train_editor(unet, schedule, ColourClip(), images, config, tmp_path, resume=False, progress=False)
    assert len(fresh.losses) == 2 * 5  # started over: 2 batches × 5 edited steps


def test_t_edit_past_the_first_step_is_refused_before_inverting(setup, tmp_path, monkeypatch):
    import asyrp_edu.train_asyrp as train_asyrp

    unet, schedule, images, config = setup
    config.t_edit = 900  # 8 steps: the first DDIM step is t = 875
    monkeypatch.setattr(train_asyrp, "cached_inversion", lambda *a, **k: pytest.fail("inverted first"))
    with pytest.raises(ValueError, match="t_edit <= 875"):
        train_editor(unet, schedule, ColourClip(), images, config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # no empty folder left behind either


@pytest.mark.parametrize("field, value, match", [("loss_kind", "l2", "'cosine', 'log'"), ("num_steps", 0, "num_steps"),
                                                 ("batch_size", 0, "batch_size"), ("epochs", 0, "epochs"),
                                                 ("lr", 0.0, "lr must be a finite number > 0"),
                                                 ("lr", float("inf"), "lr must be a finite"),
                                                 ("t_edit", 1200, "outside"),
                                                 ("lambda_recon", -1.0, "3·cos of the texts"),
                                                 ("lambda_keep", float("nan"), "lambda_keep must be a finite"),
                                                 ("lambda_clip", -0.5, "lambda_clip must be"),
                                                 ("reference", "authors", "now called 'x0-both'"),
                                                 ("reference", "x1", "'trajectory', 'x0-both'")])
def test_bad_training_settings_name_the_fix(field, value, match):
    with pytest.raises(ValueError, match=match):
        EditorConfig(source="red", target="green", **{field: value})


def test_nan_loss_names_the_step(setup, tmp_path):
    unet, schedule, images, config = setup
    clip = ColourClip()
    clip.encode_image = lambda x: x.mean(dim=(2, 3)) * float("nan")
    with pytest.raises(FloatingPointError, match="batch 0, timestep t=875"):
        train_editor(unet, schedule, clip, images, config, tmp_path, progress=False)


def test_a_finite_loss_with_non_finite_gradients_stops_at_its_step(setup, tmp_path):
    """sqrt at 0 has an infinite slope: the loss is finite, its gradient is not, and one step would leave f_t NaN."""
    unet, schedule, images, config = setup
    config.t_edit = 875  # a single edited step: before, training finished and saved a NaN editor
    clip = ColourClip()
    plain = clip.encode_image
    clip.encode_image = lambda x: plain(x) + (x - x.detach()).abs().mean(dim=(1, 2, 3))[:, None].sqrt()
    with pytest.raises(FloatingPointError, match="gradients became non-finite .*batch 0, timestep t=875"):
        train_editor(unet, schedule, clip, images, config, tmp_path, progress=False)
    assert not (tmp_path / EDITOR_FILE).exists()


def test_a_trainable_unet_is_frozen_with_a_warning(setup, tmp_path):
    unet, schedule, images, config = setup
    unet.requires_grad_(True)
    with pytest.warns(UserWarning, match="froze the U-Net"):
        train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, progress=False)
    assert not any(p.requires_grad for p in unet.parameters())
    assert all(p.grad is None for p in unet.parameters())  # no gradients went into the diffusion model


def test_scaling_and_bad_intervals():
    assert step_scale(40, 80) == 0.5
    assert ScaledEditor(lambda h, e: h, -2.0)(torch.ones(1), None) == -2.0
    with pytest.raises(ValueError, match="t_boost"):
        Intervals(t_edit=200, t_boost=400)
    with pytest.raises(ValueError, match="same text"):
        EditorConfig(source="a face", target="a face")


@pytest.mark.parametrize("t_boost", [0, 400])
def test_scales_in_one_batch_give_each_scale_alone(tiny_unet, t_boost):
    """generate_scaled (one batch of scales × faces without boosting; one call per scale with it) equals
    generate_edited once per scale, also the η = 1 noise below t_boost."""
    schedule, x_T = Schedule.linear(), torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    editor = torch.nn.Conv2d(tiny_unet.config.block_out_channels[-1], tiny_unet.config.block_out_channels[-1], 1)
    f_t = lambda h, temb: editor(h)  # noqa: E731 — a Δh_t that depends on h_t, so each scale's trajectory differs
    scales, intervals = [-1.0, 0.0, 0.5, 2.0], Intervals(500, t_boost)
    batched = generate_scaled(tiny_unet, x_T, schedule, f_t, scales, intervals, num_steps=8)
    alone = [generate_edited(tiny_unet, x_T, schedule, ScaledEditor(f_t, s), intervals, num_steps=8) for s in scales]
    assert len(batched) == 4 and all(b.shape == x_T.shape for b in batched)
    for b, a in zip(batched, alone):  # the random tiny U-Net's samples reach |x| ~ 70: float noise relative to that
        assert (b - a).abs().max() < 1e-6 * a.abs().max() * 10
    assert (alone[0] - alone[3]).abs().max() > 1e-2 * alone[0].abs().max()  # the scales do differ
    with pytest.raises(ValueError, match="4 scales for a batch of 2"):
        ScaledEditor(f_t, torch.ones(4))(torch.zeros(2, 8, 4, 4), None)


def test_quality_boosting_adds_noise_only_below_t_boost(tiny_unet):
    schedule, x_T = Schedule.linear(), torch.randn(1, 3, 16, 16)

    def run(t_boost, seed):
        _, traj = generate_edited(tiny_unet, x_T, schedule, None, Intervals(500, t_boost), num_steps=8,
                                  generator=torch.Generator().manual_seed(seed), return_trajectory=True)
        return traj

    plain_a, plain_b = run(0, 1), run(0, 2)
    boost_a, boost_b = run(400, 1), run(400, 2)
    assert torch.equal(plain_a[-1][2].prev_sample, plain_b[-1][2].prev_sample)  # deterministic without boosting
    for (t, kind, out_a), (_, _, out_b) in zip(boost_a, boost_b):
        assert kind == ("boost" if t < 400 else "edit" if t >= 500 else "ddim")
        same = torch.equal(out_a.prev_sample, out_b.prev_sample)
        assert same == (t >= 400), t  # different noise z changes x only from the first boosted step on
    # without a generator every run draws the same noise (seed 0), so runs with and without an edit compare
    default = [generate_edited(tiny_unet, x_T, schedule, None, Intervals(500, 400), num_steps=8) for _ in range(2)]
    assert torch.equal(*default) and not torch.equal(default[0], boost_a[-1][2].prev_sample)  # seed 0, not 1


def test_quality_boosting_replayed_with_diffusers(tiny_unet):
    """η = 1 with noise z below t_boost and η = 0 above: diffusers' DDIMScheduler, fed the same z, lands on our x_0."""
    from diffusers import DDIMScheduler

    reference = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=True, steps_offset=0)
    reference.set_timesteps(8)
    unet = tiny_unet.double()  # float64: round-off over 8 steps of a random network cannot hide a difference
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = generate_edited(unet, x_T, Schedule.from_diffusers(reference), None, Intervals(500, 400), num_steps=8,
                           generator=torch.Generator().manual_seed(6))
    g, x = torch.Generator().manual_seed(6), x_T
    with torch.no_grad():
        for t in reference.timesteps:
            eta = 1.0 if t < 400 else 0.0
            z = torch.randn(x.shape, generator=g, dtype=x.dtype) if eta else None
            x = reference.step(unet(x, t).sample, t, x, eta=eta, variance_noise=z).prev_sample
    assert torch.allclose(ours, x, rtol=1e-6, atol=1e-5)  # |x| reaches ~100 on this random network


def test_load_editor_refuses_another_models_editor(setup, tmp_path):
    from asyrp_edu.delta_block import DeltaBlock
    from asyrp_edu.models import save_safetensors_atomic
    from asyrp_edu.train_asyrp import load_editor, new_editor

    unet, schedule, images, config = setup
    result = train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path / "ok", progress=False)
    editor, loaded_config = load_editor(unet, result.weights)
    assert loaded_config == config and not editor.training
    trained, loaded = result.editor.state_dict(), editor.state_dict()
    assert list(loaded) == list(trained) and float(trained["conv2.weight"].abs().sum()) > 0  # conv2 starts at 0
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    save_safetensors_atomic(DeltaBlock(64, 128).state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="64 channels"):
        load_editor(unet, tmp_path / "other.safetensors")
    save_safetensors_atomic(new_editor(unet).state_dict(), tmp_path / "bare.safetensors")  # no config
    with pytest.raises(ValueError, match="not the training config.*asyrp-edu train"):
        load_editor(unet, tmp_path / "bare.safetensors")
    save_safetensors_atomic({"weight": torch.zeros(3)}, tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="not an f_t checkpoint"):
        load_editor(unet, tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="asyrp-edu train"):
        load_editor(unet, tmp_path / "missing.safetensors")
    # a model of the same shape with other weights (another toy DDPM, say) is refused too
    other = copy.deepcopy(unet)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="another model of the same shape.*--ddpm"):
        load_editor(other, result.weights)



def test_editors_and_runs_saved_under_the_old_reference_name_still_load(setup, tmp_path):
    """reference 'authors' was renamed 'x0-both': files that record the old name load as the new one."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from asyrp_edu.models import save_safetensors_atomic
    from asyrp_edu.train_asyrp import check_same_run, load_editor

    unet, schedule, images, config = setup
    config.reference = "x0-both"
    result = train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path / "run", progress=False)
    with safe_open(str(result.weights), "pt") as f:
        metadata = f.metadata()
    metadata["config"] = json.dumps({**json.loads(metadata["config"]), "reference": "authors"})
    save_safetensors_atomic(load_file(str(result.weights)), tmp_path / "old.safetensors", metadata)
    assert load_editor(unet, tmp_path / "old.safetensors")[1].reference == "x0-both"
    check_same_run({"reference": "authors", "lr": 1.0}, {"reference": "x0-both", "lr": 1.0}, tmp_path / "s.pt")
    with pytest.raises(ValueError, match="reference: 'x0' -> 'x0-both'"):
        check_same_run({"reference": "x0"}, {"reference": "x0-both"}, tmp_path / "s.pt")
    # a run from before ignore_timesteps existed used t: it does not go on without it
    check_same_run({"lr": 1.0}, {"lr": 1.0, "ignore_timesteps": False}, tmp_path / "s.pt")
    with pytest.raises(ValueError, match="ignore_timesteps: False -> True"):
        check_same_run({"lr": 1.0}, {"lr": 1.0, "ignore_timesteps": True}, tmp_path / "s.pt")


def test_an_editor_that_ignores_timesteps_trains_and_loads_as_one(setup, tmp_path):
    """ignore_timesteps (the authors' --ignore_timesteps): Δh depends on h_t only, also after loading."""
    from asyrp_edu.hspace import h_shape, temb_dim
    from asyrp_edu.train_asyrp import load_editor

    unet, schedule, images, config = setup
    config.ignore_timesteps = True
    result = train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, progress=False)
    editor, loaded_config = load_editor(unet, result.weights)
    assert loaded_config.ignore_timesteps and editor.ignore_timesteps
    assert float(editor.conv2.weight.abs().sum()) > 0  # it learned something
    torch.nn.init.normal_(editor.temb_proj.weight)  # a time shift it must not use
    h = torch.randn(2, *h_shape(unet))
    temb_a, temb_b = torch.randn(2, temb_dim(unet)), torch.randn(2, temb_dim(unet))
    assert torch.equal(editor(h, temb_a), editor(h, temb_b))
    editor.ignore_timesteps = False
    assert not torch.allclose(editor(h, temb_a), editor(h, temb_b))


@pytest.mark.parametrize("reference", ["trajectory", "x0"])
def test_trajectory_reference_compares_with_the_unedited_trajectory(setup, tmp_path, monkeypatch, reference):
    """reference='trajectory': the L1 term's P_t^source comes from the unedited trajectory, not the edited x_t."""
    import asyrp_edu.train_asyrp as train_asyrp
    from asyrp_edu.editing import ConstantDeltaH
    from asyrp_edu.hspace import h_shape
    unet, schedule, images, config = setup
    config.reference, config.batch_size = reference, 4
    seen = []
    real_loss = train_asyrp.asyrp_loss

    def spy(encode_image, P_edit, P_source, *args, **kwargs):
        seen.append(P_source.detach().clone())
        return real_loss(encode_image, P_edit, P_source, *args, **kwargs)

    monkeypatch.setattr(train_asyrp, "asyrp_loss", spy)
    editor = ConstantDeltaH(h_shape(unet))
    torch.nn.init.normal_(editor.delta, std=1.0)  # a large edit, so the edited x_t leaves the unedited trajectory
    train_editor(unet, schedule, ColourClip(), images, config, tmp_path, progress=False, editor=editor)
    x_T = train_asyrp.cached_inversion(unet, schedule, images, config.num_steps, tmp_path / "cache", progress=False)
    _, unedited = generate_edited(unet, x_T, schedule, None, Intervals(config.t_edit, 0), config.num_steps,
                                  return_trajectory=True)
    gaps = [float((P - out.P_t).abs().max()) for P, (_, _, out) in zip(seen, unedited)]
    # x_T starts both trajectories: the same ε to 1e-5, as everywhere. Training decodes both passes sharing their
    # skips (shared_skips.py), which rounds ε differently, and P_t = (x_t − sqrt(1 − alpha_bar)·ε) / sqrt(alpha_bar)
    # magnifies a gap in ε by sqrt((1 − alpha_bar) / alpha_bar), ~150 at the first step
    alpha_bar = schedule.at(schedule.timesteps(config.num_steps)[0])
    assert len(seen) == 5 and gaps[0] * (alpha_bar / (1 - alpha_bar)) ** 0.5 < 1e-5, gaps
    if reference == "trajectory":
        assert max(gaps) < 1e-5, gaps
    else:  # the unedited P_t of the edited x_t drifts away from the unedited trajectory
        assert max(gaps) > 1e-3, gaps


def test_keep_loss_holds_the_kept_direction_still(setup, tmp_path):
    """λ_keep > 0 makes f_t change the image less along a kept text direction (here red-blue) than λ_keep = 0."""
    unet, schedule, images, config = setup
    config.epochs, config.keep = 3, (("red", "blue"),)
    clip, moved = ColourClip(), {}
    x_T = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain = generate_edited(unet, x_T, schedule, None, Intervals(300, 0), num_steps=8)
    for lambda_keep in (0.0, 10.0):
        config.lambda_keep = lambda_keep
        editor = train_editor(unet, schedule, clip, images, config, tmp_path / str(lambda_keep), progress=False).editor
        edited = generate_edited(unet, x_T, schedule, editor, Intervals(300, 0), num_steps=8)
        change = clip.encode_image(edited) - clip.encode_image(plain)  # (4, 3)
        moved[lambda_keep] = float((change[:, 2] - change[:, 0]).abs().mean())  # along blue − red
    assert moved[10.0] < 0.5 * moved[0.0], moved


@pytest.mark.parametrize("reference", ["trajectory", "x0-both"])
def test_training_steps_replayed_by_hand(setup, tmp_path, monkeypatch, reference):
    """lr 0: every step's x_t, P_t^edit and loss inputs, recomputed with diffusers' schedule. The default
    ("trajectory", as the authors' code: L1 against P_t of an unedited DDIM trajectory from the same x_T) and
    "x0-both" (L1 against x0)."""
    from diffusers import DDIMScheduler

    import asyrp_edu.train_asyrp as train_asyrp
    from asyrp_edu.editing import ConstantDeltaH
    from asyrp_edu.hspace import h_shape

    class LeaningClip(ColourClip):  # 'red' leans towards 'green', so cos(E_T(red), E_T(green)) and λ_recon are not 0
        def encode_text(self, prompts):
            return torch.tensor([{"red": [1.0, 0.5, 0.0], "green": [0.0, 1.0, 0.0]}[p] for p in prompts])

    unet, schedule, images, config = setup
    config.reference, config.t_edit, config.lr = reference, 375, 0.0  # lr 0: Δh stays what we set
    editor = ConstantDeltaH(h_shape(unet))
    torch.nn.init.normal_(editor.delta, std=1.0, generator=torch.Generator().manual_seed(0))
    steps, losses = [], []
    real_eps, real_loss = train_asyrp.asymmetric_eps, train_asyrp.asyrp_loss
    batched = []  # on the CPU the two decoder passes run as one 2B batch (on a GPU one after the other)
    monkeypatch.setattr(train_asyrp, "asymmetric_eps", lambda unet, x, t, f, **kw: steps.append((t, x.clone())) or
                        batched.append(kw["batched"]) or real_eps(unet, x, t, f, **kw))
    monkeypatch.setattr(train_asyrp, "asyrp_loss", lambda *args: losses.append(args) or real_loss(*args))
    train_editor(unet, schedule, LeaningClip(), images, config, tmp_path, progress=False, editor=editor)

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    scheduler.set_timesteps(8)
    grid = [int(t) for t in scheduler.timesteps]  # 875, 750, …, 0
    edited_ts = [t for t in grid if t >= 375]
    assert [t for t, _ in steps] == edited_ts * 2  # two batches of two images, each over [T, t_edit]
    assert batched == [True] * len(steps)
    cos = 0.5 / 1.25 ** 0.5  # cos((1, 0.5, 0), (0, 1, 0))
    red, green = torch.tensor([1.0, 0.5, 0.0]) / 1.25 ** 0.5, torch.tensor([0.0, 1.0, 0.0])
    expected_delta_T = (green - red) / (green - red).norm()
    alpha_bar = scheduler.alphas_cumprod.double()
    x_T = train_asyrp.cached_inversion(unet, schedule, images, 8, tmp_path / "cache", progress=False)
    for batch in (slice(0, 2), slice(2, 4)):
        x = x_source = x_T[batch].double()
        for t, t_prev in zip(edited_ts, grid[1:]):
            (seen_t, seen_x), args = steps.pop(0), losses.pop(0)
            assert seen_t == t and torch.allclose(seen_x.double(), x, atol=1e-4), t
            with torch.no_grad():
                eps = unet(seen_x, t).sample.double()
                hook = unet.mid_block.register_forward_hook(lambda m, i, h: h + editor.delta)
                eps_edit = unet(seen_x, t).sample.double()
                hook.remove()
            a, a_prev = alpha_bar[t], alpha_bar[t_prev]
            # P_t from the edited ε, D_t from the unedited one: x_{t−1} = sqrt(ā_{t−1})·P_t + sqrt(1 − ā_{t−1})·ε
            P_edit = (seen_x.double() - (1 - a).sqrt() * eps_edit) / a.sqrt()
            x = a_prev.sqrt() * P_edit + (1 - a_prev).sqrt() * eps
            with torch.no_grad():  # the unedited trajectory, plain DDIM from the same x_T
                eps_source = unet(x_source.float(), t).sample.double()
            P_source = (x_source - (1 - a).sqrt() * eps_source) / a.sqrt()
            x_source = a_prev.sqrt() * P_source + (1 - a_prev).sqrt() * eps_source
            _, loss_P_edit, recon_reference, delta_T, lambda_recon, lambda_clip, kind, clip_reference = args[:8]
            assert torch.allclose(loss_P_edit.detach().double(), P_edit, atol=1e-3), t
            assert torch.equal(clip_reference, images[batch])  # ΔI against x0 in both
            if reference == "x0-both":
                assert torch.equal(recon_reference, images[batch])
            else:
                assert torch.allclose(recon_reference.double(), P_source, atol=1e-3), t
            assert lambda_recon == pytest.approx(3 * cos, abs=1e-6)
            # ΔT points from the source text (red) to the target text (green), each embedding normalised first
            assert torch.allclose(delta_T, expected_delta_T, atol=1e-6), delta_T
            assert (lambda_clip, kind) == (1.0, "cosine")


def test_a_damaged_or_foreign_inversion_cache_is_inverted_again(setup, tmp_path):
    """A cached x_T that cannot be read, has another shape or holds NaN is remade (with a warning), never returned."""
    from safetensors.torch import save_file

    from asyrp_edu.train_asyrp import cached_inversion

    unet, schedule, images, _ = setup
    x_T = cached_inversion(unet, schedule, images, 4, tmp_path, progress=False)
    (path,) = tmp_path.glob("inversion_*.safetensors")
    whole = path.read_bytes()
    for damage in (lambda: path.write_bytes(whole[:50]), lambda: save_file({"other": x_T}, str(path)),
                   lambda: save_file({"x_T": x_T[:1]}, str(path)), lambda: save_file({"x_T": x_T * torch.nan}, str(path))):
        damage()
        with pytest.warns(UserWarning, match="inverting again"):
            again = cached_inversion(unet, schedule, images, 4, tmp_path, progress=False)
        assert torch.equal(again, x_T)
    assert cached_inversion(unet, schedule, images, 4, tmp_path, progress=False).shape == x_T.shape


def test_the_inversion_cache_tells_shapes_and_schedules_apart(setup, tmp_path):
    """The same bytes as another shape, or another noise schedule, are another inversion."""
    from asyrp_edu.train_asyrp import cached_inversion

    unet, schedule, images, _ = setup
    cached_inversion(unet, schedule, images, 4, tmp_path, progress=False)
    reshaped = images.reshape(2, 3, 32, 16)  # the same values, another image size
    assert cached_inversion(unet, schedule, reshaped, 4, tmp_path, progress=False).shape == reshaped.shape
    cached_inversion(unet, Schedule.linear(beta_end=0.012), images, 4, tmp_path, progress=False)
    assert len(list(tmp_path.glob("inversion_*.safetensors"))) == 3
    # the same values in float64: read back from the cache in the dtype asked for
    assert cached_inversion(unet, schedule, images.double(), 4, tmp_path, progress=False).dtype == torch.float64
    assert len(list(tmp_path.glob("inversion_*.safetensors"))) == 3


@pytest.mark.parametrize("damage", ["truncated", "empty", "safetensors", "other keys"])
def test_a_damaged_training_state_names_the_fix(setup, tmp_path, damage):
    from safetensors.torch import save_file

    from asyrp_edu.train_asyrp import STATE_FILE

    unet, schedule, images, config = setup
    train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, progress=False)
    state = tmp_path / STATE_FILE
    {"truncated": lambda: state.write_bytes(state.read_bytes()[:200]), "empty": lambda: state.write_bytes(b""),
     "safetensors": lambda: save_file({"a": torch.zeros(1)}, str(state)),
     "other keys": lambda: torch.save({"model": {}, "step": 3}, state)}[damage]()
    with pytest.raises(ValueError, match="--no-resume"):
        train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, progress=False)
    train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, resume=False, progress=False)


def test_a_half_precision_unet_loads_its_editor_in_half_precision_with_a_warning(setup, tmp_path):
    """Its float32 fingerprint is lost in float16, so whether the editor fits cannot be checked: said, not refused."""
    from asyrp_edu.train_asyrp import load_editor

    unet, schedule, images, config = setup
    result = train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path, progress=False)
    unet.half()
    with pytest.warns(UserWarning, match="cannot be checked"):
        editor, _ = load_editor(unet, result.weights)
    assert next(editor.parameters()).dtype == torch.float16


def test_an_editor_from_a_newer_version_names_the_fix(setup, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from asyrp_edu.models import save_safetensors_atomic
    from asyrp_edu.train_asyrp import load_editor

    unet, schedule, images, config = setup
    result = train_editor(unet, schedule, ColourClip(), images[:2], config, tmp_path / "run", progress=False)
    with safe_open(str(result.weights), "pt") as f:
        metadata = f.metadata()
    metadata["config"] = json.dumps({**json.loads(metadata["config"]), "warp_factor": 9})
    save_safetensors_atomic(load_file(str(result.weights)), tmp_path / "new.safetensors", metadata)
    with pytest.raises(ValueError, match=r"newer asyrp_edu.*warp_factor.*pip install -U"):
        load_editor(unet, tmp_path / "new.safetensors")
