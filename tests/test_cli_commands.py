"""The `asyrp-edu` commands for the demo and the shipped toy models: demo, measure, train-vae, train-evaluator,
train-ddpm --world toy-ldm, and the weights manifest."""
import json
import re

import pytest
import torch
from PIL import Image

from asyrp_edu.cli import main


def test_demo_writes_the_figure_of_the_readme(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ASYRP_EDU_SMOKE", "1")  # 10 steps instead of 50 and 40
    main(["demo", "--out", str(tmp_path / "figures" / "demo.png")])
    image = Image.open(tmp_path / "figures" / "demo.png")
    assert image.format == "PNG" and image.width > image.height > 300  # four rows of eight faces with titles
    mse = float(re.search(r"reconstruction MSE ([0-9.]+)", capsys.readouterr().out).group(1))
    assert mse < 0.005  # held-out faces come back from their x_T (an unrelated face is ~0.5 away)
    with pytest.raises(SystemExit, match="is a folder; give the PNG's file name"):
        main(["demo", "--out", str(tmp_path)])  # refused at once, before a minute of work
    with pytest.raises(SystemExit, match=r"'\.jpq' figure; name it with one of"):
        main(["demo", "--out", str(tmp_path / "demo.jpq")])  # a typo, also refused before the work


@pytest.mark.parametrize("flags", [["--heldout", "4"], ["--inversion-steps", "5"]])
def test_measure_of_the_toy_ldm_refuses_the_pixel_inversion_flags(flags):
    with pytest.raises(SystemExit, match=f"{flags[0]} set the pixel DDPM's inversion check; --world toy-ldm"):
        main(["measure", "--world", "toy-ldm", *flags])  # refused, not silently ignored


def test_measure_reports_the_toy_ddpm(capsys):
    main(["measure", "--samples", "16", "--sample-steps", "5", "--heldout", "4", "--inversion-steps", "5"])
    report = json.loads(capsys.readouterr().out)
    assert report["evaluator_on_generator_images"]["glasses_accuracy"] >= 0.95
    gaps = {}
    for name, m in report["sample_marginals"].items():  # the gap is the larger of the mean's and the spread's
        gaps[name] = max(abs(m["model_mean"] - m["generator_mean"]), abs(m["model_std"] - m["generator_std"]))
        assert m["max_gap"] == pytest.approx(gaps[name], abs=1e-6), name
    assert set(gaps) == {"mouth", "eye_size", "skin_tone", "hair_color", "glasses"}
    assert report["max_marginal_gap"] == pytest.approx(max(gaps.values()), abs=1e-6)
    assert report["max_marginal_gap"] < 0.3  # 16 samples at 5 steps (measured 0.17); README: 0.09 at 512 and 50
    recon = report["reconstruction"]
    assert recon["n"] == 4 and recon["steps"] == 5 and recon["mse"] < 0.5 * recon["mse_plain_ddim_inversion"]


def test_sample_marginals_judge_the_models_samples(monkeypatch):
    """The model columns read the DDPM's samples (here faked: every face smiles at 0.9), the generator's the truth."""
    from asyrp_edu import quality, toy
    from asyrp_edu.evaluator import load_evaluator

    def smiling_samples(unet, schedule, n, *a, **k):
        attrs = toy.sample_attributes(n, seed=5)
        return toy.render({**attrs, "mouth": torch.full((n,), 0.9)})

    monkeypatch.setattr(quality, "sample_from_noise", smiling_samples)
    report = quality.sample_marginals(None, None, load_evaluator(), n=32, progress=False)
    assert report["mouth"]["model_mean"] == pytest.approx(0.9, abs=0.05) and report["mouth"]["model_std"] < 0.05
    assert abs(report["mouth"]["generator_mean"]) < 0.05 and report["mouth"]["max_gap"] > 0.8


def test_training_commands_write_weights_that_load(tmp_path, capsys, monkeypatch):
    from safetensors import safe_open

    from asyrp_edu.autoencoder import load_toy_autoencoder
    from asyrp_edu.checks import sha256_of
    from asyrp_edu.evaluator import load_evaluator
    from asyrp_edu.ldm import load_toy_ldm

    monkeypatch.chdir(tmp_path)
    main(["train-vae", "--out", "vae", "--steps", "2", "--batch-size", "4"])
    assert "weights after 2 steps" in capsys.readouterr().out
    codec = load_toy_autoencoder(tmp_path / "vae" / "toy_vae.safetensors")
    main(["train-evaluator", "--out", "judge.safetensors", "--steps", "2"])
    judge = load_evaluator(tmp_path / "judge.safetensors")
    assert set(judge(torch.zeros(2, 3, 32, 32))) >= {"mouth", "glasses"}
    main(["train-ddpm", "--world", "toy-ldm", "--out", "ldm", "--steps", "2", "--batch-size", "2",
          "--autoencoder", "vae/toy_vae.safetensors"])
    assert "EMA weights after 2 steps" in capsys.readouterr().out
    with safe_open("ldm/toy_ldm.safetensors", framework="pt") as f:  # it names the autoencoder it was trained with
        made_with = f.metadata()
    assert made_with["autoencoder"] == "toy_vae.safetensors"
    assert made_with["autoencoder_sha256"] == sha256_of(tmp_path / "vae" / "toy_vae.safetensors")
    ldm = load_toy_ldm(tmp_path / "ldm" / "toy_ldm.safetensors", tmp_path / "vae" / "toy_vae.safetensors")
    z = codec.encode(torch.zeros(1, 3, 32, 32))
    assert ldm.unet(z, torch.tensor([500])).sample.shape == z.shape  # the latent U-Net runs on this VAE's latents
    with pytest.raises(SystemExit, match="real models come pretrained"):
        main(["train-ddpm", "--world", "celeba_hq"])


def test_manifest_lists_the_shipped_weights_as_they_are(tmp_path, monkeypatch):
    from asyrp_edu import manifest, models

    shipped = json.loads(models.MANIFEST.read_text())
    monkeypatch.setattr(manifest, "MANIFEST", tmp_path / "manifest.json")
    assert manifest.write_manifest() == shipped == json.loads((tmp_path / "manifest.json").read_text())
    assert set(shipped) == {p.name for p in models.WEIGHTS_DIR.glob("*.safetensors")}
    assert list(tmp_path.iterdir()) == [tmp_path / "manifest.json"]  # the temporary file is gone


def test_hspace_report_is_consistent_with_itself_and_numpy(capsys, monkeypatch):
    """`asyrp-edu hspace` at a tiny size: every derived number follows from the measured ones as documented."""
    import numpy as np

    from asyrp_edu import properties
    from asyrp_edu.editing import ScaledEditor

    measured, real = [], properties.measure_linearity
    monkeypatch.setattr(properties, "measure_linearity",
                        lambda unet, schedule, editor, *a, **k: measured.append(editor) or real(unet, schedule,
                                                                                               editor, *a, **k))
    applied, real_changes = [], properties.mean_changes  # the global Δh each homogeneity figure applies

    def spy(unet, schedule, delta_h, *a, **k):
        if isinstance(delta_h, dict):
            applied.append(delta_h)
        return real_changes(unet, schedule, delta_h, *a, **k)

    monkeypatch.setattr(properties, "mean_changes", spy)
    main(["hspace", "--n", "2", "--steps", "4"])
    assert len(applied) == 3 * 4  # per edit: mean over images, over images and t, the same with the length kept
    for per_t, over_t, kept in zip(applied[::3], applied[1::3], applied[2::3]):
        ts = sorted(per_t)
        assert sorted(over_t) == sorted(kept) == ts and all(per_t[t].shape[0] == 1 for t in ts)  # one Δh per t
        assert not all(torch.equal(per_t[ts[0]], per_t[t]) for t in ts)  # f_t's Δh_t changes with t
        assert all(torch.equal(over_t[ts[0]], over_t[t]) and torch.equal(kept[ts[0]], kept[t]) for t in ts)
        assert torch.allclose(over_t[ts[0]], torch.stack([per_t[t] for t in ts]).mean(0), atol=1e-6)
        lengths = torch.stack([per_t[t].norm() for t in ts])
        assert float(kept[ts[0]].norm()) == pytest.approx(float(lengths.mean()), rel=1e-5)
        assert float(over_t[ts[0]].norm()) < float(lengths.mean())  # averaging directions shortens
    # editors trained with 40 steps, sampled with 4: Δh × 10, as `evaluate --steps 4` does
    assert len(measured) == 4 and all(isinstance(e, ScaledEditor) and e.scale == 10 for e in measured)
    report = json.loads(capsys.readouterr().out)
    edits = ("smiling", "glasses", "tanned", "blonde")
    assert report["n"] == 2 and set(report["linearity"]) == set(report["homogeneity"]) == set(edits)
    for edit in edits:
        lin, hom = report["linearity"][edit], report["homogeneity"][edit]
        assert lin["scales"] == [-1.0, -0.5, 0.0, 0.5, 1.0] and lin["mean_change"][2] == 0.0
        if np.std(lin["mean_change"]) > 1e-5:  # (changes at rounding level give NaN: no correlation to speak of)
            assert lin["pearson_r"] == pytest.approx(float(np.corrcoef(lin["scales"], lin["mean_change"])[0, 1]))
        assert hom["f_t"] == lin["mean_change"][4]  # f_t's own effect is scale 1 of the linearity strip
        for share, effect in (("share_images", "mean_over_images"), ("share_images_and_t", "mean_over_images_and_t"),
                              ("share_images_and_t_length_kept", "mean_over_images_and_t_length_kept")):
            expected = hom[effect] / hom["f_t"] if abs(hom["f_t"]) >= 0.01 else float("nan")  # judge's noise
            assert hom[share] == pytest.approx(expected, nan_ok=True), (edit, share)
        assert hom["mean_cos_across_t"] > 0.5, edit  # Δh_t points one way at every edited t (0.81–0.97 here)
    assert set(report["combinations"]) == {"smiling + glasses", "smiling + glasses + tanned"}
    for group, parts in report["combinations"].items():
        assert list(parts) == group.split(" + ")
        for edit, c in parts.items():
            assert c["solo"] == report["homogeneity"][edit]["f_t"]  # measured once, shared
            assert c["ratio"] == pytest.approx(c["mixed"] / c["solo"] if abs(c["solo"]) >= 0.01 else float("nan"),
                                               nan_ok=True)
