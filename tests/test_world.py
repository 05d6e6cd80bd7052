"""The WORLD switch: the toy world by default on a CPU; a real-model world from a folder, tested offline."""
import pytest
import torch

from asyrp_edu import registry, world
from asyrp_edu.models import CELEBA_HQ_UNET_CONFIG, build_unet
from asyrp_edu.tiny_clip import load_tiny_clip


def test_default_is_toy_without_a_gpu():
    assert world.default_world() == ("celeba_hq" if torch.cuda.is_available() else "toy")


def test_a_real_world_from_a_folder_uses_the_authors_tables(tmp_path, monkeypatch):
    config = dict(CELEBA_HQ_UNET_CONFIG, sample_size=32, block_out_channels=(32, 32, 32, 32, 64, 64),
                  layers_per_block=1)
    build_unet(config).save_pretrained(tmp_path / "unet")
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip())  # no real CLIP offline
    w = world.load_world(str(tmp_path), device="cpu")
    assert w.image_size == 32 and w.num_steps == 40
    t_edit, t_boost = w.intervals_for("a sad cartoon face", "a smiling cartoon face")
    assert 0 < t_boost < t_edit < 1000
    with pytest.raises(KeyError, match="smiling"):
        w.editor("no such edit")
