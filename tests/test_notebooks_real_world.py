"""The notebooks' real-world path (WORLD = a real model), run offline on a same-layout model with random weights.

On Colab `WORLD = None` picks "celeba_hq" because a GPU is present. Here `world.default_world` is pointed at a saved
small CelebA-HQ-layout U-Net instead, CLIP is the tiny toy one (OpenAI's weights cannot be downloaded), and the
authors' released editor is replaced by a random f_t of the right shape. Everything else — the folder loading, the
authors' LPIPS tables, sampling training images from the model, the branches the notebooks take outside the toy
world — runs as it would on Colab.
"""
import runpy
from pathlib import Path

import matplotlib
import pytest
import torch

from asyrp_edu import registry, world
from asyrp_edu.delta_block import DeltaBlock
from asyrp_edu.hspace import h_shape, temb_dim
from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet
from asyrp_edu.tiny_clip import load_tiny_clip

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def real_world(tmp_path, monkeypatch):
    """A saved random CelebA-HQ-layout model as the default world; runs in tmp_path (caches land there)."""
    torch.manual_seed(0)
    unet = build_unet(CELEBA_HQ_LAYOUT_SMALL)
    unet.save_pretrained(tmp_path / "model" / "unet")
    released = {}

    def official_editor(edit, model, **kwargs):  # stands in for the download of the authors' f_t
        released[edit] = model
        block = DeltaBlock(h_shape(unet)[0], temb_dim(unet))
        torch.nn.init.normal_(block.conv2.weight, std=0.05)  # non-zero, so the edit path changes the images
        return block

    monkeypatch.setattr(world, "default_world", lambda: str(tmp_path / "model"))
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip(device=device))
    monkeypatch.setattr(registry, "official_editor", official_editor)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYRP_EDU_CACHE", str(tmp_path / "cache"))
    matplotlib.use("Agg")
    return released


@pytest.mark.filterwarnings("ignore:.*not one of the authors' models")  # expected: a random-weight stand-in
@pytest.mark.parametrize("name", ["02_ddim", "03_h_space", "04_train_asyrp", "05_linearity", "06_combinations"])
def test_notebook_runs_in_a_real_world(real_world, name):
    namespace = runpy.run_path(str(NOTEBOOKS / f"{name}.py"), run_name="__main__")
    assert namespace["world"].name == "model" and namespace["world"].name != world.TOY
    if name in ("05_linearity", "06_combinations"):  # the authors' editors in the sliders, CLIP as the judge
        assert isinstance(namespace["judge"], world.ClipJudge)
        assert sorted(namespace["scene"].editors) == sorted(world.LIVE_EDITS["real"]) == sorted(real_world)
        assert namespace["scene"].original.shape[-1] == 32  # a sample of the model, at the model's size
        assert namespace["scene"].t_boost > 0  # the paper's quality boosting, from the authors' table
    if name == "05_linearity":
        assert all(len(lin.mean_change) == 5 for lin in namespace["linearity"].values())
    if name == "06_combinations":
        assert set(namespace["report"]) == {"smiling", "makeup", "tanned"}  # the last group: three editors
    if name == "03_h_space":  # the global Δh: the authors' prompts and batch size, plain inversion
        assert namespace["config"].batch_size == 1 and namespace["source"] == "face"
        assert namespace["config"].inversion_iters == 0
    if name == "04_train_asyrp":
        assert namespace["judge"] is None and "reports" not in namespace  # no ground truth outside the toy world
        assert namespace["config_f"].batch_size == 1 and namespace["source"] == "face"
        assert namespace["config_f"].inversion_iters == 0  # as the authors invert
        assert real_world == {"smiling": "model"}  # the authors' editor was asked for, for this model
        assert namespace["check"]["mean_pixel_change"] > 0
