"""Bad input gets an error that names the fix."""
import json

import pytest
import torch

from asyrp_edu import models
from asyrp_edu.checks import check_images
from asyrp_edu.ddim import Schedule, ddim_invert


@pytest.mark.parametrize("images, error, match", [
    (torch.zeros(3, 32, 32), ValueError, "add a batch axis"),
    (torch.zeros(1, 32, 32, 3), ValueError, "permute"),
    (torch.zeros(1, 3, 64, 64), ValueError, "resize"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "127.5"),
    (torch.full((1, 3, 32, 32), 255.0), ValueError, "x / 127.5 - 1"),
    # not x * 2 - 1 (that would stretch 0.5 … 1.5 to 0 … 2): the range mapped onto [-1, 1]
    (torch.full((1, 3, 32, 32), 0.5).index_fill_(3, torch.tensor([0]), 1.5), ValueError,
     r"\(x - lo\) / \(hi - lo\) \* 2 - 1 where lo, hi = 0.5, 1.5"),
    (torch.zeros(0, 3, 32, 32), ValueError, "empty batch"),
    (torch.full((1, 3, 32, 32), -2.0), ValueError, "every value is -2"),  # no (hi - lo) = 0 to divide by
    (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN.*torch.nan_to_num"),
    ([[0.0]], TypeError, "torch.Tensor"),
])
def test_bad_images_name_the_fix(images, error, match):
    with pytest.raises(error, match=match) as raised:
        check_images(images, size=32)
    assert type(raised.value) is error  # not a subclass: callers catch exactly these


def test_inversion_rejects_images_outside_the_unit_range():
    with pytest.raises(ValueError, match="must lie in \\[-1, 1\\]"):
        ddim_invert(lambda x, t: x, torch.full((1, 3, 8, 8), 3.0), Schedule.linear(), 5, progress=False)


def test_timestep_outside_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="below T = 1000"):
        Schedule.linear().at(1000)
    with pytest.raises(ValueError, match="num_steps"):
        Schedule.linear().timesteps(0)


def _fake_weights(tmp_path, monkeypatch):
    """A weights folder with one tiny file and its manifest, patched in as the shipped folder."""
    weights = tmp_path / "weights"
    sha = models.save_safetensors_atomic({"w": torch.ones(3)}, weights / models.TOY_DDPM_FILE)
    (weights / "manifest.json").write_text(json.dumps({models.TOY_DDPM_FILE: {"sha256": sha}}))
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(models, "MANIFEST", weights / "manifest.json")
    return weights


def test_checksum_mismatch_names_the_fix(tmp_path, monkeypatch):
    weights = _fake_weights(tmp_path, monkeypatch)
    tensors, _ = models.load_checked(None, models.TOY_DDPM_FILE, "train-ddpm --world toy")
    assert torch.equal(tensors["w"], torch.ones(3))
    models.save_safetensors_atomic({"w": torch.zeros(3)}, weights / models.TOY_DDPM_FILE)  # tampered
    with pytest.raises(ValueError, match="sha256 .* reinstall"):
        models.load_checked(None, models.TOY_DDPM_FILE, "train-ddpm --world toy")


def test_missing_shipped_file_names_the_fix(tmp_path, monkeypatch):
    weights = _fake_weights(tmp_path, monkeypatch)
    (weights / models.TOY_DDPM_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="asyrp-edu train-ddpm"):
        models.load_toy_ddpm()


def test_missing_user_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train one with"):
        models.load_toy_ddpm(tmp_path / "nope.safetensors")


def test_a_file_that_is_not_a_ddpm_names_the_fix(tmp_path):
    """A .pt checkpoint, or a safetensors file of another network, passed where a DDPM goes (`--ddpm FILE`)."""
    (tmp_path / "state.pt").write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="not a safetensors file.*asyrp-edu train-ddpm"):
        models.load_toy_ddpm(tmp_path / "state.pt")
    with pytest.raises(ValueError, match="does not hold this U-Net's weights.*asyrp-edu train-ddpm"):
        models.load_toy_ddpm(models.WEIGHTS_DIR / "editor_smiling.safetensors")
    # the judge, the tiny CLIP and the autoencoder say the same when given another network's file
    from asyrp_edu.autoencoder import load_toy_autoencoder
    from asyrp_edu.evaluator import load_evaluator
    from asyrp_edu.tiny_clip import load_tiny_clip

    ddpm = models.WEIGHTS_DIR / models.TOY_DDPM_FILE
    with pytest.raises(ValueError, match="evaluation network's weights.*asyrp-edu train-evaluator"):
        load_evaluator(ddpm)
    with pytest.raises(ValueError, match="tiny CLIP's weights.*asyrp-edu train-clip"):
        load_tiny_clip(ddpm)
    with pytest.raises(ValueError, match="asyrp-edu train-vae"):
        load_toy_autoencoder(ddpm)


def test_intervals_are_bounded_by_the_models_own_T(tiny_unet):
    """t_edit is checked against the schedule's T: above it nothing would ever be edited, and a model with more
    training steps than 1,000 can be edited from its own top."""
    from asyrp_edu.editing import Intervals, generate_edited

    x_T = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"t_edit=800 is outside \[0, 500\]"):
        generate_edited(tiny_unet, x_T, Schedule.linear(500), torch.ones(1), Intervals(800), num_steps=4)
    long = Schedule.linear(2000)
    edited = generate_edited(tiny_unet, x_T, long, torch.ones(1), Intervals(1200, T=2000), num_steps=4)
    plain = generate_edited(tiny_unet, x_T, long, None, Intervals(1999, T=2000), num_steps=4)
    assert not torch.allclose(edited, plain)  # the steps t = 1500 above t_edit = 1200 were edited
    with pytest.raises(ValueError, match="outside"):
        Intervals(1200)  # T is 1,000 unless given


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    models.save_safetensors_atomic({"w": torch.ones(2)}, tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_the_same_tensors_and_metadata_give_the_same_file(tmp_path):
    """safetensors writes metadata in hash-map order; saving sorts it, so a retrain that changes nothing keeps the
    manifest's sha256 (12 keys: the chance that five unsorted writes all agree is about 1 in 10^34)."""
    from safetensors import safe_open

    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    metadata = {f"key{i}": json.dumps({"Δh": i}, ensure_ascii=False) for i in range(12)}
    shas = {models.save_safetensors_atomic(tensors, tmp_path / f"{i}.safetensors", metadata) for i in range(5)}
    assert len(shas) == 1
    with safe_open(tmp_path / "0.safetensors", "pt") as f:
        assert f.metadata() == metadata  # still a valid file with the same contents
        assert torch.equal(f.get_tensor("w"), tensors["w"])
    blob = (tmp_path / "0.safetensors").read_bytes()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert list(header["__metadata__"]) == sorted(metadata)


def test_a_shipped_file_named_by_its_path_is_checked_too(tmp_path, monkeypatch):
    """`--ddpm asyrp_edu/weights/toy_ddpm.safetensors` (or load_evaluator(path)) must not skip the sha256 check."""
    from asyrp_edu import models

    weights = tmp_path / "weights"
    weights.mkdir()
    sha = models.save_safetensors_atomic({"w": torch.ones(3)}, weights / models.TOY_EVALUATOR_FILE)
    (weights / "manifest.json").write_text(json.dumps({models.TOY_EVALUATOR_FILE: {"sha256": sha}}))
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(models, "MANIFEST", weights / "manifest.json")
    models.load_checked(weights / models.TOY_EVALUATOR_FILE, models.TOY_EVALUATOR_FILE, "train-evaluator")
    models.save_safetensors_atomic({"w": torch.zeros(3)}, weights / models.TOY_EVALUATOR_FILE)  # tampered
    with pytest.raises(ValueError, match="sha256"):
        models.load_checked(weights / models.TOY_EVALUATOR_FILE, models.TOY_EVALUATOR_FILE, "train-evaluator")
    other = tmp_path / "mine.safetensors"  # a file of one's own elsewhere is not held to the manifest
    models.save_safetensors_atomic({"w": torch.zeros(3)}, other)
    models.load_checked(other, models.TOY_EVALUATOR_FILE, "train-evaluator")
