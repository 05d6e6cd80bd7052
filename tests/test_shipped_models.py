"""The models that ship inside the package: sha256-checked, and as good as the README says (on small samples)."""
import json

import torch
import torch.nn.functional as F

from asyrp_edu import toy
from asyrp_edu.checks import sha256_of
from asyrp_edu.evaluator import evaluator_accuracy, load_evaluator
from asyrp_edu.models import MANIFEST, TOY_DDPM_FILE, TOY_EVALUATOR_FILE, WEIGHTS_DIR, load_toy_ddpm
from asyrp_edu.quality import reconstruction_mse


def test_manifest_lists_every_shipped_file_with_its_hash_and_size_limit():
    manifest = json.loads(MANIFEST.read_text())
    assert {TOY_DDPM_FILE, TOY_EVALUATOR_FILE} <= set(manifest)
    for name, entry in manifest.items():
        path = WEIGHTS_DIR / name
        assert sha256_of(path) == entry["sha256"], name
        assert path.stat().st_size <= 10 * 2**20, f"{name} is over 10 MB"


def test_toy_ddpm_has_h_at_8x8_like_celeba_hq():
    from diffusers import DDPMScheduler

    unet, schedule = load_toy_ddpm()
    # the schedule the file records, as diffusers builds it: Ho et al.'s linear β from 1e-4 to 0.02
    reference = DDPMScheduler(1000, 1e-4, 0.02, "linear").alphas_cumprod
    assert schedule.T == 1000 and torch.allclose(schedule.alpha_bar.float(), reference, atol=1e-6)
    seen = {}
    unet.mid_block.register_forward_hook(lambda m, i, o: seen.update(h=o.shape))  # returns None: output kept
    with torch.no_grad():
        unet(torch.zeros(1, 3, 32, 32), torch.tensor([500]))
    assert seen["h"][-2:] == (8, 8)


def test_evaluator_meets_its_bars_on_fresh_generator_images():
    report = evaluator_accuracy(load_evaluator(), n=1024, seed=123)
    assert report["mae_mouth"] <= 0.05, report
    # every leakage figure reads the other attributes too (measured: 0.011 at most)
    assert max(v for k, v in report.items() if k.startswith("mae_")) <= 0.03, report
    assert report["glasses_accuracy"] >= 0.98, report


def test_evaluator_reads_soft_smiles_and_soft_frowns_alike():
    """A diffusion model draws slightly soft faces: blur must not pull smiles down (a judge trained with only sad
    faces blurred read smiles 0.034 too low at this blur, frowns 0.005 too high; the shipped one: both 0.001 low)."""
    x, attrs = toy.sample(512, seed=555, heldout=True)
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    error = load_evaluator()(0.6 * x + 0.4 * blur)["mouth"] - attrs["mouth"]
    for group in (attrs["mouth"] > 0.5, attrs["mouth"] < -0.5):
        assert abs(float(error[group].mean())) <= 0.015, float(error[group].mean())


def test_inversion_reconstruction_is_accurate_at_40_steps():
    unet, schedule = load_toy_ddpm()
    iterated = reconstruction_mse(unet, schedule, n=8, num_steps=40, seed=7, progress=False)  # the package's default
    plain = reconstruction_mse(unet, schedule, n=8, num_steps=40, seed=7, progress=False, fixed_point_iters=0)
    assert iterated <= 0.002, iterated
    assert iterated < 0.1 * plain, (iterated, plain)  # the fixed-point iterations are what makes it exact


def test_shipped_model_is_denoising_not_random():
    unet, schedule = load_toy_ddpm()
    x0, _ = toy.sample(8, seed=3, heldout=True)
    t = torch.full((8,), 300)
    eps = torch.randn_like(x0)
    a = schedule.alpha_bar[300].float()
    with torch.no_grad():
        pred = unet(a.sqrt() * x0 + (1 - a).sqrt() * eps, t).sample
    assert float((pred - eps).pow(2).mean()) < 0.02  # measured 0.007; a random network would be near 1 or above


def test_toy_autoencoder_reconstructs_held_out_faces():
    from asyrp_edu.autoencoder import autoencoder_mse, load_toy_autoencoder

    codec = load_toy_autoencoder()
    assert codec.encode(toy.sample(2, seed=0)[0]).shape == (2, 4, 16, 16)
    assert autoencoder_mse(codec, n=64, seed=11) <= 0.003


def test_toy_ldm_has_h_at_8x8_and_denoises_latents():
    from asyrp_edu.hspace import h_shape
    from asyrp_edu.ldm import load_toy_ldm

    ldm = load_toy_ldm()
    assert h_shape(ldm.unet) == (96, 8, 8) and ldm.image_size == 32
    x0, _ = toy.sample(8, seed=3, heldout=True)
    with torch.no_grad():
        z0 = ldm.codec.encode(x0)
        eps = torch.randn_like(z0)
        a = ldm.schedule.alpha_bar[300].float()
        pred = ldm.unet(a.sqrt() * z0 + (1 - a).sqrt() * eps, torch.full((8,), 300)).sample
    # measured 0.01; predicting zero would score 1.0, a latent scaled wrongly (×1/scale, ×2) 0.2–0.4
    assert float((pred - eps).pow(2).mean()) < 0.05
    assert abs(float(z0.std()) - 1) < 0.15  # the recorded scale makes the latents unit-spread (measured 0.96)


def test_tiny_clip_zero_shot_accuracy():
    # Issue 3, item 3: ≥ 95% on each binary choice between an attribute's two prompts, on held-out faces
    from asyrp_edu.tiny_clip import PROMPTS, load_tiny_clip, zero_shot_accuracy

    accuracy = zero_shot_accuracy(load_tiny_clip(), n=256, seed=5)
    assert set(accuracy) == set(PROMPTS) and min(accuracy.values()) >= 0.95, accuracy


def test_tiny_clip_text_directions_are_clean():
    # Faces that differ in one attribute only move E_I along that attribute's ΔT, and not along the others'.
    from asyrp_edu.tiny_clip import direction_crosstalk, load_tiny_clip

    table = direction_crosstalk(load_tiny_clip(), n=32, seed=3)
    for moved, row in table.items():
        assert row[moved] >= 0.9, (moved, row)
        assert all(abs(v) <= 0.1 for k, v in row.items() if k != moved), (moved, row)


def test_shipped_editors_record_the_model_they_were_trained_on():
    from safetensors import safe_open

    from asyrp_edu.evaluate_edits import TOY_EDITS
    from asyrp_edu.ldm import load_toy_ldm
    from asyrp_edu.models import WEIGHTS_DIR
    from asyrp_edu.train_asyrp import shipped_editor_file, unet_fingerprint

    made_for = {"toy": unet_fingerprint(load_toy_ddpm()[0]), "toy-ldm": unet_fingerprint(load_toy_ldm().unet)}
    assert made_for["toy"] != made_for["toy-ldm"]
    files = {shipped_editor_file(e, "toy"): "toy" for e in TOY_EDITS}
    files[shipped_editor_file("smiling", "toy-ldm")] = "toy-ldm"
    for name, world in files.items():
        with safe_open(str(WEIGHTS_DIR / name), "pt") as f:
            assert f.metadata()["unet_fingerprint"] == made_for[world], name


def test_shipped_editors_record_how_their_training_faces_were_inverted():
    # an editor is applied to images inverted as its training images were (README, "Why the inversion iterates")
    from asyrp_edu.ddim import INVERSION_FIXED_POINT_ITERS
    from asyrp_edu.evaluate_edits import TOY_EDITS
    from asyrp_edu.ldm import load_toy_ldm
    from asyrp_edu.train_asyrp import load_editor
    from asyrp_edu.world import load_world

    unet, _ = load_toy_ddpm()
    for edit in TOY_EDITS:
        assert load_editor(unet, edit=edit)[1].inversion_iters == INVERSION_FIXED_POINT_ITERS == 2, edit
    assert load_world("toy", device="cpu").inversion_iters == INVERSION_FIXED_POINT_ITERS
    assert load_editor(load_toy_ldm().unet, edit="smiling", world="toy-ldm")[1].inversion_iters == 0  # plain


def test_shipped_editors_were_made_by_the_commands_in_train_toy_editors_sh():
    """The script's command for each edit, parsed by the CLI, gives the settings the shipped editor recorded."""
    import re
    import shlex
    from dataclasses import asdict
    from pathlib import Path

    from asyrp_edu.cli import build_parser
    from asyrp_edu.cli_editors import editor_config_from_args
    from asyrp_edu.train_asyrp import load_editor

    script = (Path(__file__).parents[1] / "scripts" / "train_toy_editors.sh").read_text()
    extra = dict(re.findall(r'^\s*\[(\w+)\]="([^"]*)"', script, flags=re.M))  # the per-edit arguments
    common = re.search(r'asyrp-edu train (.*?)\\\n\s*\$\{extra\[\$edit\]\}', script, flags=re.S).group(1)
    assert set(extra) == {"smiling", "glasses", "tanned", "blonde", "alien"}
    unet, _ = load_toy_ddpm()
    for edit, arguments in extra.items():
        args = build_parser().parse_args(["train", *shlex.split(common.replace('"$edit"', edit)),
                                          *shlex.split(arguments)])
        # JSON keeps tuples as lists: compare both sides as JSON would hold them
        expected = json.loads(json.dumps(asdict(editor_config_from_args(args))))
        recorded = json.loads(json.dumps(asdict(load_editor(unet, edit=edit)[1])))
        assert recorded == expected, edit
