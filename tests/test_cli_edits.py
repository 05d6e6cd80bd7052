"""`asyrp-edu train` and `asyrp-edu evaluate` end to end on the shipped toy models, at a tiny size."""
import json
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from asyrp_edu.cli import main


def test_train_then_evaluate_a_toy_editor(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["train", "--world", "toy", "--edit", "smiling", "--n-images", "4", "--batch-size", "4", "--steps", "5",
          "--t-edit", "500", "--out", "editors/smiling"])
    assert (tmp_path / "editors/smiling/editor.safetensors").is_file()
    capsys.readouterr()
    main(["evaluate", "--world", "toy", "--attribute", "smiling", "--editor", "editors/smiling", "--n", "4",
          "--steps", "5", "--t-edit", "500", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and report["success_rate"] * 4 in (0, 1, 2, 3, 4)  # a share of 4 faces
    # the trained editor did reach the faces (measured: change 0.001, S_dir 0.72; without it both are exactly 0)
    assert report["mean_change"] != 0 and report["s_dir"] > 0.3
    assert set(report["leakage"]) == {"eye_size", "skin_tone", "hair_color"}
    assert report["reconstruction_mse"] < 0.01  # the shipped DDPM inverts at 5 steps (0.0004 at 10)


def test_evaluate_scales_delta_h_for_another_number_of_steps(tmp_path, capsys, monkeypatch):
    """An editor trained with 5 steps, evaluated with 10: Δh × 5/10 (the paper's n_train/n_test), as the sliders do."""
    import asyrp_edu.evaluate_edits as evaluate_edits
    from asyrp_edu.editing import ScaledEditor

    monkeypatch.chdir(tmp_path)
    main(["train", "--world", "toy", "--edit", "smiling", "--n-images", "2", "--batch-size", "2", "--steps", "5",
          "--t-edit", "500", "--out", "editor"])
    seen = []
    monkeypatch.setattr(evaluate_edits, "evaluate_editor", lambda unet, schedule, editor, *a, **k: seen.append(
        (editor, a[5], a[6])) or evaluate_edits.EditReport("smiling", 2, 0, 0, {}, 0, 0, 0))
    for steps in ("10", "5"):
        main(["evaluate", "--attribute", "smiling", "--editor", "editor", "--n", "2", "--steps", steps, "--t-edit",
              "0"])
    (scaled, intervals, n_steps), (plain, _, _) = seen
    assert isinstance(scaled, ScaledEditor) and scaled.scale == 0.5 and n_steps == 10
    assert intervals.t_edit == 0  # --t-edit 0 is a value, not "use the editor's own"
    assert not isinstance(plain, ScaledEditor)


def test_train_and_evaluate_on_a_toy_ddpm_of_your_own(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["train-ddpm", "--world", "toy", "--out", "my_ddpm", "--steps", "2", "--batch-size", "2"])
    ddpm = "my_ddpm/toy_ddpm.safetensors"
    main(["train", "--world", "toy", "--ddpm", ddpm, "--edit", "smiling", "--n-images", "2", "--batch-size", "2",
          "--steps", "4", "--t-edit", "500", "--out", "editor"])
    capsys.readouterr()
    main(["evaluate", "--ddpm", ddpm, "--attribute", "smiling", "--editor", "editor", "--n", "2", "--steps", "4",
          "--json"])
    assert json.loads(capsys.readouterr().out)["n"] == 2
    with pytest.raises(SystemExit, match="another model of the same shape"):  # the shipped DDPM is not its model
        main(["evaluate", "--attribute", "smiling", "--editor", "editor", "--n", "2", "--steps", "4", "--json"])
    with pytest.raises(SystemExit, match="another model of the same shape"):  # nor is the shipped editor this one's
        main(["evaluate", "--ddpm", ddpm, "--attribute", "smiling", "--n", "2", "--steps", "4", "--json"])
    with pytest.raises(SystemExit, match="--ddpm replaces the pixel DDPM"):
        main(["evaluate", "--world", "toy-ldm", "--ddpm", ddpm, "--attribute", "smiling"])
    with pytest.raises(SystemExit, match="train-ddpm"):
        main(["train", "--world", "toy", "--ddpm", "no/such.safetensors", "--edit", "smiling"])


@pytest.mark.parametrize("flags, fast, autocast", [
    ([], False, False),  # an AVX2-only CPU: bf16 autocast would run ten times slower, so float32
    ([], True, True),  # a GPU with bf16, or a CPU with AVX512 / AMX
    (["--fp32"], True, False),
    (["--bf16"], False, True),
])
def test_train_ddpm_uses_bf16_autocast_only_where_it_is_fast(flags, fast, autocast, tmp_path, monkeypatch):
    import asyrp_edu.train_ddpm as train_ddpm

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_ddpm, "bf16_autocast_is_fast", lambda device: fast)
    seen = []
    real_autocast = torch.autocast

    def recording_autocast(device_type, dtype=None, enabled=True, **kwargs):
        seen.append((dtype, enabled))
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    main(["train-ddpm", "--world", "toy", "--out", "ddpm", "--steps", "1", "--batch-size", "1", *flags])
    assert seen == [(torch.bfloat16, autocast)]


def test_bf16_is_fast_where_torch_has_bf16_kernels():
    from asyrp_edu.settings import bf16_autocast_is_fast

    assert bf16_autocast_is_fast("cpu") == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert bf16_autocast_is_fast("cuda") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert not bf16_autocast_is_fast("meta")
    with pytest.raises(SystemExit):  # one or the other
        main(["train-ddpm", "--fp32", "--bf16"])


def test_cli_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="--edit NAME"):
        main(["train", "--world", "toy"])
    with pytest.raises(SystemExit, match="asyrp-edu train --world toy --edit smiling"):
        main(["evaluate", "--attribute", "smiling", "--editor", "no/such/folder"])
    with pytest.raises(SystemExit, match="known edits"):
        main(["evaluate", "--attribute", "frowning"])
    with pytest.raises(SystemExit, match="known edits"):
        main(["train", "--world", "toy", "--edit", "frowning"])
    with pytest.raises(SystemExit, match="--world toy"):
        main(["train", "--world", "celeba_hq", "--edit", "smiling"])
    with pytest.raises(SystemExit, match=r"SOURCE\|TARGET"):
        main(["train", "--world", "toy", "--edit", "smiling", "--keep", "moustache"])


@pytest.mark.parametrize("argv", [["train", "--world", "toy", "--edit", "smiling", "--n-images", "0"],
                                  ["evaluate", "--attribute", "smiling", "--n", "-1"], ["hspace", "--n", "0"],
                                  ["measure", "--samples", "0"],
                                  ["train", "--edit", "smiling", "--inversion-iters", "-1"]])
def test_counts_below_one_are_refused_before_any_work(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "must be a whole number >=" in capsys.readouterr().err


def test_the_command_prints_the_message_not_a_traceback(monkeypatch, capsys):
    """A user error ends the command with its message alone; ASYRP_EDU_TRACEBACK=1 lets the exception through."""
    import asyrp_edu.cli_editors

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--attribute", "frowning"])
    assert str(exit_info.value).startswith("asyrp-edu evaluate: error: unknown toy edit")
    assert "'" not in str(exit_info.value)[:40]  # a KeyError's message, not its repr
    monkeypatch.setenv("ASYRP_EDU_TRACEBACK", "1")
    with pytest.raises(KeyError, match="known edits"):
        main(["evaluate", "--attribute", "frowning"])
    monkeypatch.setenv("ASYRP_EDU_TRACEBACK", "0")  # "0" means off
    with pytest.raises(SystemExit, match="ASYRP_EDU_TRACEBACK=1 shows where"):
        main(["evaluate", "--attribute", "frowning"])
    monkeypatch.delenv("ASYRP_EDU_TRACEBACK")
    with pytest.raises(SystemExit) as exit_info:  # a command's own refusal reads the same
        main(["train", "--world", "toy", "--source", "a"])
    assert str(exit_info.value).startswith("asyrp-edu train: error: give --edit NAME")
    import torch

    from asyrp_edu.settings import checked_device

    if not torch.cuda.is_available():  # asking for a GPU that is not there: the fix, not a driver traceback
        with pytest.raises(SystemExit, match="asyrp-edu train-ddpm: error: --device cuda: no GPU is visible"):
            main(["train-ddpm", "--device", "cuda", "--steps", "1", "--out", "never_written"])
    with pytest.raises(ValueError, match="not a device torch knows"):
        checked_device("gpu")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(asyrp_edu.cli_editors, "_cmd_train", interrupted)
    assert main(["train", "--world", "toy", "--edit", "smiling"]) == 130
    assert "run the same command again" in capsys.readouterr().err
    monkeypatch.setattr(asyrp_edu.cli_editors, "_cmd_evaluate", interrupted)
    assert main(["evaluate", "--attribute", "smiling"]) == 130
    assert capsys.readouterr().err.strip() == "asyrp-edu evaluate: interrupted"  # evaluate does not resume

    def broken(args):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(asyrp_edu.cli_editors, "_cmd_train", broken)
    with pytest.raises(RuntimeError, match="a bug of ours"):  # not a user error: the traceback stays
        main(["train", "--world", "toy", "--edit", "smiling"])


def test_train_then_evaluate_a_toy_ldm_editor(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["train", "--world", "toy-ldm", "--edit", "smiling", "--n-images", "4", "--batch-size", "4", "--steps", "5",
          "--t-edit", "500", "--out", "ldm/smiling", "--reference", "trajectory", "--keep", "others"])
    with safe_open(tmp_path / "ldm/smiling/editor.safetensors", "pt") as f:  # the keep loss's prompts are recorded
        config = json.loads(f.metadata()["config"])
    assert config["reference"] == "trajectory" and config["lambda_keep"] == 1.0
    assert ["a cartoon face with no glasses", "a cartoon face with glasses"] in config["keep"]
    assert not any("smiling" in target for _, target in config["keep"])
    capsys.readouterr()
    main(["evaluate", "--world", "toy-ldm", "--attribute", "smiling", "--editor", "ldm/smiling", "--n", "4",
          "--steps", "5", "--json"])
    report = json.loads(capsys.readouterr().out)
    # decoded and compared with the pixel originals (5 steps: 0.09; an unrelated face is ~0.5)
    assert report["n"] == 4 and report["reconstruction_mse"] < 0.15
    main(["evaluate", "--world", "toy-ldm", "--attribute", "smiling", "--n", "4", "--steps", "5", "--json"])
    assert json.loads(capsys.readouterr().out)["n"] == 4  # the shipped toy-LDM editor
    with pytest.raises(SystemExit, match="--world toy-ldm --edit glasses"):
        main(["evaluate", "--world", "toy-ldm", "--attribute", "glasses"])


def test_a_shared_reconstruction_gives_the_same_report():
    import torch

    from asyrp_edu import toy
    from asyrp_edu.editing import Intervals
    from asyrp_edu.evaluate_edits import evaluate_editor, reconstruct
    from asyrp_edu.evaluator import load_evaluator
    from asyrp_edu.models import load_toy_ddpm
    from asyrp_edu.tiny_clip import load_tiny_clip
    from asyrp_edu.train_asyrp import load_editor

    unet, schedule = load_toy_ddpm()
    judge, clip = load_evaluator(), load_tiny_clip()
    faces = toy.sample(3, seed=0, heldout=True)[0]
    x_T = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    editor, _ = load_editor(unet, edit="smiling")
    args = (unet, schedule, editor, judge, clip, "smiling", x_T, faces, Intervals(500), 5)
    alone = evaluate_editor(*args, with_symmetric=False)
    shared = evaluate_editor(*args, with_symmetric=False, reconstruction=reconstruct(unet, schedule, x_T, 5))
    assert shared.leakage == pytest.approx(alone.leakage)
    assert shared.mean_change == pytest.approx(alone.mean_change) and shared.s_dir == pytest.approx(alone.s_dir)
    assert shared.reconstruction_mse == pytest.approx(alone.reconstruction_mse)
    other = evaluate_editor(*args, with_symmetric=False, reconstruction=faces)  # a wrong one is really used
    assert other.reconstruction_mse == 0 != alone.reconstruction_mse
    # the judged images come back for showing (notebook 04 shows them instead of generating them again), not in JSON
    from asyrp_edu.editing import generate_edited

    assert torch.equal(alone.edited, generate_edited(unet, x_T, schedule, editor, Intervals(500), 5).clamp(-1, 1))
    assert "edited" not in alone.as_dict() and "edited" not in repr(alone)


def test_alien_success_needs_a_green_face_on_an_intact_image():
    from asyrp_edu import toy
    from asyrp_edu.evaluate_edits import alien_success, background_change, greenness

    attrs = toy.sample_attributes(8, seed=4, heldout=True)
    faces, aliens = toy.render(attrs), toy.render({**attrs, "alien": 1.0})
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise[:, 1] = noise[:, 1].abs()  # green noise: greenness alone would call it an alien
    assert (greenness(noise) > 0.2).all()
    assert alien_success(aliens, faces).all()
    assert not alien_success(faces, faces).any() and not alien_success(noise, faces).any()
    # a green wash over the whole image on faces whose background was green already: the corners barely move
    green_bg = toy.render({**attrs, "background_hue": torch.full((8,), 0.33)})
    wash = green_bg[:, :, :1, :1].expand(8, 3, 32, 32)  # the background colour everywhere
    assert (background_change(wash, green_bg) < 0.25).all()  # so the corners alone would not tell
    assert (greenness(wash) > 0.2).all() and alien_success(toy.render({**attrs, "alien": 1.0,
                                                                       "background_hue": torch.full((8,), 0.33)}),
                                                          green_bg).all()
    assert not alien_success(wash, green_bg).any()


def test_boosted_reports_compare_runs_with_the_same_noise(tiny_unet):
    """With t_boost > 0 the edited, symmetric and unedited runs get the same η = 1 noise: Δh = 0 changes nothing."""
    from asyrp_edu.ddim import Schedule
    from asyrp_edu.editing import ConstantDeltaH, Intervals
    from asyrp_edu.evaluate_edits import evaluate_editor
    from asyrp_edu.hspace import h_shape

    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def judge(images):
        return {k: images[:, i % 3].mean((1, 2)) for i, k in enumerate(("mouth", "eye_size", "skin_tone",
                                                                          "hair_color"))} | \
            {"glasses": (images[:, 1].mean((1, 2)) > 0).float()}

    clip = SimpleNamespace(encode_image=lambda images: images.mean((2, 3)),
                           encode_text=lambda prompts: torch.eye(3)[:len(prompts)])
    report = evaluate_editor(tiny_unet, Schedule.linear(), ConstantDeltaH(h_shape(tiny_unet)), judge, clip,
                             "smiling", x_T, torch.zeros(3, 3, 16, 16), Intervals(500, 300), 8)
    # round-off only (the edited decoder runs as a batch of two); with other noise the unedited run differs too
    assert abs(report.mean_change) < 1e-5 and abs(report.symmetric_change) < 1e-5
    assert report.glasses_flip_rate == 0.0 and max(report.leakage.values()) < 1e-5


def test_every_number_of_an_edit_report_by_hand(tiny_unet):
    """A judge and a CLIP made of image statistics, a constant Δh: each field recounted from the images themselves."""
    from asyrp_edu.ddim import Schedule
    from asyrp_edu.editing import ConstantDeltaH, Intervals, generate_edited
    from asyrp_edu.evaluate_edits import TOY_EDITS, evaluate_editor, reconstruct
    from asyrp_edu.hspace import h_shape

    schedule, n = Schedule.linear(), 6
    x_T = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    originals = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    editor = ConstantDeltaH(h_shape(tiny_unet))
    editor.delta.data = torch.randn(editor.delta.shape, generator=torch.Generator().manual_seed(3)) * 3
    with torch.no_grad():
        recon = reconstruct(tiny_unet, schedule, x_T, 4)
        shown = recon.clamp(-1, 1)
        edited = generate_edited(tiny_unet, x_T, schedule, editor, Intervals(500), 4).clamp(-1, 1)
        symmetric = generate_edited(tiny_unet, x_T, schedule, editor, Intervals(500), 4, symmetric=True).clamp(-1, 1)

    def red(images):
        return images[:, 0].mean((1, 2))

    def green_top(images):
        return images[:, 1, :8].mean((1, 2))

    # exactly half the edited images smile; glasses appear on images 0 and 1, vanish on 2 and 3, stay on 4 and 5
    mouth_offset = 0.5 - float(red(edited).sort().values[n // 2])
    rises = green_top(edited) > green_top(shown)
    glasses_at = (green_top(edited) + green_top(shown)) / 2
    glasses_at[4:] = -float("inf")
    inverted = torch.tensor([False, False, True, True, False, False]) ^ ~rises
    inverted[4:] = False

    def judge(images):
        return {"mouth": red(images) + mouth_offset, "eye_size": images[:, 1].mean((1, 2)),
                "skin_tone": images[:, 2].mean((1, 2)), "hair_color": images[:, :, :4].mean((1, 2, 3)),
                "glasses": ((green_top(images) > glasses_at) ^ inverted).float()}

    def encode_image(images):
        return images.mean((2, 3))  # (B, 3)

    spec = TOY_EDITS["smiling"]
    # texts that describe these images: the unit mean of their normalised features
    texts = {spec["source"]: F.normalize(F.normalize(encode_image(shown), dim=-1).mean(0), dim=0),
             spec["target"]: F.normalize(F.normalize(encode_image(edited), dim=-1).mean(0), dim=0)}
    clip = SimpleNamespace(encode_image=encode_image,
                           encode_text=lambda prompts: torch.stack([texts[p] for p in prompts]))
    report = evaluate_editor(tiny_unet, schedule, editor, judge, clip, "smiling", x_T, originals, Intervals(500), 4)

    before, after = judge(shown), judge(edited)
    assert report.n == n and report.success_rate == pytest.approx(0.5)
    assert report.mean_change == pytest.approx(float((red(edited) - red(shown)).mean()), abs=1e-6)
    for name in ("eye_size", "skin_tone", "hair_color"):
        assert report.leakage[name] == pytest.approx(float((after[name] - before[name]).abs().mean()), abs=1e-6)
    assert set(report.leakage) == {"eye_size", "skin_tone", "hair_color"}
    assert before["glasses"].tolist() == [0, 0, 1, 1, 1, 1] and after["glasses"].tolist() == [1, 1, 0, 0, 1, 1]
    assert report.glasses_flip_rate == pytest.approx(4 / n)
    delta_T = F.normalize(texts[spec["target"]] - texts[spec["source"]], dim=0)
    delta_I = F.normalize(encode_image(edited), dim=-1) - F.normalize(encode_image(shown), dim=-1)
    s_dir = float((F.normalize(delta_I, dim=-1) @ delta_T).mean())
    assert report.s_dir == pytest.approx(s_dir, abs=1e-5) and report.s_dir > 0.2  # ΔI points along ΔT
    assert report.reconstruction_mse == pytest.approx(float((recon - originals).pow(2).mean()), rel=1e-5)
    assert report.symmetric_change == pytest.approx(float((red(symmetric) - red(shown)).mean()), abs=1e-6)
    assert abs(report.mean_change) > 1e-3 and report.symmetric_change != pytest.approx(report.mean_change)


def test_a_prompt_names_a_folder_inside_runs_and_out_must_be_a_folder(tmp_path):
    from asyrp_edu.cli_editors import _folder_name

    assert _folder_name("a smiling face") == "a_smiling_face" and _folder_name("café") == "café"
    assert _folder_name("../../etc/passwd") == "etc_passwd" and _folder_name("///") == "editor"
    assert len(_folder_name("x" * 200)) == 60
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match="is a file"):
        main(["train", "--world", "toy", "--edit", "smiling", "--out", str(tmp_path / "a_file")])


def test_choices_spelled_out_in_the_parser_match_the_library():
    """The parser lists --reference and --along literally (no torch import); they must stay the library's lists."""
    from asyrp_edu.cli import build_parser
    from asyrp_edu.intervals import ALONG
    from asyrp_edu.train_asyrp import REFERENCES

    commands = build_parser()._subparsers._group_actions[0].choices
    choices = {a.dest: a.choices for name in ("train", "intervals") for a in commands[name]._actions}
    assert tuple(choices["reference"]) == REFERENCES and tuple(choices["along"]) == ALONG


@pytest.mark.parametrize("argv, match", [
    (["evaluate", "--attribute", "smiling", "--steps", "4", "--t-edit", "900"], "above the first of the 4 DDIM steps"),
    (["train", "--edit", "smiling", "--source", "a", "--target", "b"], "drop --source/--target"),
    (["train", "--edit", "smiling", "--lambda-keep", "3"], "needs --keep"),
    (["intervals", "--text-cosine", "0.5", "--source", "a", "--target", "b"], "one or the other"),
    (["train-ddpm", "--autoencoder", "vae.safetensors"], "--world toy-ldm"),
    (["hspace", "--steps", "3"], "edits 1 timestep.*--steps 4 or more"),
])
def test_contradictory_or_empty_runs_are_refused_before_any_work(argv, match, monkeypatch, tmp_path):
    import asyrp_edu.inversion_cache as inversion_cache
    import asyrp_edu.train_ddpm as train_ddpm

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inversion_cache, "cached_inversion", lambda *a, **k: pytest.fail("inverted first"))
    monkeypatch.setattr(train_ddpm, "train_ddpm", lambda *a, **k: pytest.fail("trained first"))
    with pytest.raises(SystemExit, match=match):
        main(argv)


@pytest.mark.parametrize("argv, match", [
    (["train-clip", "--lr", "inf"], "--lr: must be a finite number > 0"),
    (["train-ddpm", "--lr", "0"], "--lr: must be a finite number > 0"),
    (["train-ddpm", "--coarse-weight", "nan"], "--coarse-weight: must be a finite number >= 0"),
    (["measure", "--inversion-steps", "2000"], "--inversion-steps: must be at most 1000"),
    (["train", "--edit", "smiling", "--seed", str(2**32)], r"--seed: must be a whole number from 0 to 2\*\*32"),
])
def test_out_of_range_numbers_are_refused_by_the_parser(argv, match, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize("argv", [["train-evaluator", "--out", "{file}/judge.safetensors"],
                                  ["train-clip", "--out", "{file}/clip.safetensors"],
                                  ["train-vae", "--out", "{file}"], ["train", "--edit", "smiling", "--out", "{file}"],
                                  ["demo", "--out", "{file}/demo.png"]])
def test_an_output_path_below_a_file_is_refused_before_any_work(argv, tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit, match="afile is a file, not a folder"):
        main([a.format(file=tmp_path / "afile") for a in argv])


def test_judging_an_editor_on_another_attribute_says_so(capsys):
    from asyrp_edu.models import WEIGHTS_DIR

    main(["evaluate", "--attribute", "glasses", "--editor", str(WEIGHTS_DIR / "editor_smiling.safetensors"), "--n", "2",
          "--steps", "4", "--json"])
    assert "trained towards 'a smiling cartoon face', not 'a cartoon face with glasses'" in capsys.readouterr().err


def test_train_chooses_the_directional_loss():
    from asyrp_edu.cli import build_parser
    from asyrp_edu.cli_editors import editor_config_from_args

    def config(*flags):
        return editor_config_from_args(build_parser().parse_args(["train", "--edit", "smiling", *flags]))

    assert config().loss_kind == "cosine"  # the paper's 1 − cos(ΔI, ΔT)
    assert config("--loss", "log").loss_kind == "log"  # the authors' code's −log((1 + cos)/2)
    with pytest.raises(SystemExit):
        config("--loss", "l2")


def test_train_choices_are_the_ones_editor_config_accepts():
    """The parser spells out --loss and --reference (so building it imports no torch); they must not drift."""
    import argparse

    from asyrp_edu.cli import build_parser
    from asyrp_edu.train_asyrp import LOSS_KINDS, REFERENCES

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    choices = {a.dest: a.choices for a in subcommands.choices["train"]._actions}
    assert tuple(choices["loss"]) == LOSS_KINDS and tuple(choices["reference"]) == REFERENCES
