"""`asyrp-edu train` and `asyrp-edu evaluate` end to end on the shipped toy models, at a tiny size."""
import json

import pytest
import torch
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
    assert report["n"] == 4 and -1 <= report["s_dir"] <= 1 and 0 <= report["success_rate"] <= 1
    assert set(report["leakage"]) == {"eye_size", "skin_tone", "hair_color"}


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
    with pytest.raises(ValueError, match="another model of the same shape"):  # the shipped DDPM is not its model
        main(["evaluate", "--attribute", "smiling", "--editor", "editor", "--n", "2", "--steps", "4", "--json"])
    with pytest.raises(ValueError, match="another model of the same shape"):  # nor is the shipped editor this one's
        main(["evaluate", "--ddpm", ddpm, "--attribute", "smiling", "--n", "2", "--steps", "4", "--json"])
    with pytest.raises(SystemExit, match="--ddpm replaces the pixel DDPM"):
        main(["evaluate", "--world", "toy-ldm", "--ddpm", ddpm, "--attribute", "smiling"])
    with pytest.raises(FileNotFoundError, match="train-ddpm"):
        main(["train", "--world", "toy", "--ddpm", "no/such.safetensors", "--edit", "smiling"])


def test_cli_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="--edit NAME"):
        main(["train", "--world", "toy"])
    with pytest.raises(SystemExit, match="asyrp-edu train --world toy --edit smiling"):
        main(["evaluate", "--attribute", "smiling", "--editor", "no/such/folder"])
    with pytest.raises(KeyError, match="known edits"):
        main(["evaluate", "--attribute", "frowning"])
    with pytest.raises(SystemExit, match="--world toy"):
        main(["train", "--world", "celeba_hq", "--edit", "smiling"])
    with pytest.raises(SystemExit, match=r"SOURCE\|TARGET"):
        main(["train", "--world", "toy", "--edit", "smiling", "--keep", "moustache"])


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
