"""Real-world loading, tested offline: same-config random models saved to a folder, fast clear failures, editors."""
import shutil
import time

import pytest
import torch

from asyrp_edu import registry
from asyrp_edu.ddim import Schedule
from asyrp_edu.delta_block import DeltaBlock
from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet
from test_delta_block import CHECKPOINTS


@pytest.mark.parametrize("layout", ["pipeline", "model"])
def test_a_local_folder_loads_through_from_pretrained(tmp_path, layout):
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    unet = build_unet(CELEBA_HQ_LAYOUT_SMALL)
    unet.save_pretrained(tmp_path / "unet" if layout == "pipeline" else tmp_path)
    scheduler_dir = tmp_path / "scheduler" if layout == "pipeline" else tmp_path
    # a schedule other than the default linear one, so that a loader ignoring the folder's scheduler fails
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195)
    scheduler.save_pretrained(scheduler_dir)
    loaded, schedule = registry.load_ddpm(tmp_path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    expected, got = unet.state_dict(), loaded.state_dict()
    assert list(got) == list(expected)  # zip below would stop silently at the shorter one
    for k in expected:
        assert torch.equal(expected[k], got[k]), k
    assert torch.allclose(schedule.alpha_bar, scheduler.alphas_cumprod.double(), atol=1e-7)
    assert not torch.allclose(schedule.alpha_bar, Schedule.linear().alpha_bar, atol=1e-3)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
    assert torch.allclose(unet(x, t).sample, loaded(x, t).sample, atol=1e-6)


def test_bad_names_and_folders_are_clear(tmp_path):
    with pytest.raises(KeyError, match="celeba_hq"):
        registry.load_ddpm("celebahq")
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        registry.load_ddpm(tmp_path)


def test_offline_without_cache_fails_fast_and_says_how_to_get_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    start = time.perf_counter()
    with pytest.raises(registry.WeightsUnavailable) as error:
        registry.load_ddpm("celeba_hq")
    assert time.perf_counter() - start < 5
    assert all(word in str(error.value) for word in ("Colab", "local folder", "toy"))


def test_a_download_cut_short_gets_the_same_clear_error(tmp_path, monkeypatch):
    """A cache holding a model's config but not its weights (an interrupted download) is not a cached model."""
    cache = tmp_path / "cache"
    snapshot = cache / "models--google--ddpm-celebahq-256" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--google--ddpm-celebahq-256" / "refs").mkdir()
    (cache / "models--google--ddpm-celebahq-256" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert registry._cached("google/ddpm-celebahq-256", "main")  # the config is found...
    with pytest.raises(registry.WeightsUnavailable, match="Colab"):  # ...but without weights it is not a model
        registry.load_ddpm("celeba_hq")
    (snapshot / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert registry._model_cached("google/ddpm-celebahq-256", "main")
    with pytest.raises(registry.WeightsUnavailable, match="Colab"):  # the U-Net without its scheduler's config
        registry.load_ddpm("celeba_hq")
    (snapshot / "scheduler_config.json").write_text("{}")
    assert registry._model_cached("google/ddpm-celebahq-256", "main", files=("scheduler_config.json",))


def test_every_registered_model_names_a_repository_and_a_revision():
    assert set(registry.DDPMS) == {"celeba_hq", "church", "bedroom", "cat"}
    assert all(e.repo_id.startswith("google/ddpm-") and e.revision for e in registry.DDPMS.values())
    assert set(registry.CLIPS) == {"ViT-B-32", "ViT-B-16"}


def test_official_editor_names_and_hashes():
    assert registry.official_editor_file("smiling") == "smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth"
    assert registry.official_editor_file("gothic", "church").startswith("church_gothic_LC_church_outdoor")
    with pytest.raises(KeyError, match="pixar"):
        registry.official_editor_file("smilling")
    with pytest.raises(KeyError, match="no editors"):
        registry.official_editor_file("smiling", "cat")
    assert len(registry.official_editor_sums()) == 35


@pytest.mark.skipif(not CHECKPOINTS.is_dir(), reason="../shared/reference is not present")
def test_official_editor_download_cache_and_hash_check(tmp_path):
    base = CHECKPOINTS.resolve().as_uri() + "/"  # a file:// 'download site'
    block = registry.official_editor("smiling", base_url=base, cache_dir=tmp_path)
    assert isinstance(block, DeltaBlock) and block.channels == 512
    assert (tmp_path / registry.official_editor_file("smiling")).is_file()
    registry.official_editor("smiling", base_url="http://127.0.0.1:9/", cache_dir=tmp_path)  # cached: no download
    fake = tmp_path / "fake_site"
    fake.mkdir()
    shutil.copy(CHECKPOINTS / registry.official_editor_file("pixar"),
                fake / registry.official_editor_file("smiling"))  # the wrong file under the right name
    with pytest.raises(ValueError, match="wrong sha256"):
        registry.official_editor("smiling", base_url=fake.as_uri() + "/", cache_dir=tmp_path / "c2")
    assert not (tmp_path / "c2" / registry.official_editor_file("smiling")).exists()  # nothing half-written
    start = time.perf_counter()
    with pytest.raises(registry.WeightsUnavailable, match="toy"):
        registry.official_editor("pixar", base_url="http://127.0.0.1:9/", cache_dir=tmp_path / "c3")
    assert time.perf_counter() - start < 5


def test_real_clip_and_lpips_fail_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.perf_counter()
    with pytest.raises(registry.WeightsUnavailable, match="toy"):
        registry.load_clip("ViT-B-32")
    with pytest.raises(registry.WeightsUnavailable, match="LPIPS"):
        registry.load_lpips()
    assert time.perf_counter() - start < 5
    with pytest.raises(KeyError, match="ViT-B-16"):
        registry.load_clip("RN50")


def test_cached_clip_loads_in_offline_mode_when_the_hub_is_unreachable(monkeypatch):
    """huggingface_hub reads $HF_HUB_OFFLINE only when imported, so load_clip sets its constant for the call."""
    import huggingface_hub.constants as hub_settings
    import open_clip

    seen = []

    def fake_create(arch, pretrained, device, force_quick_gelu=False):
        seen.append(hub_settings.is_offline_mode())
        raise RuntimeError("stop here: building the model is not what this test is about")

    monkeypatch.setattr(registry, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(registry, "_clip_cached", lambda arch, tag: True)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    monkeypatch.setattr(hub_settings, "HF_HUB_OFFLINE", False)
    with pytest.raises(registry.WeightsUnavailable):
        registry.load_clip("ViT-B-32")
    assert seen == [True] and hub_settings.HF_HUB_OFFLINE is False  # offline during the call, restored after


def test_openai_clip_is_built_with_the_quick_gelu_its_weights_were_trained_with(monkeypatch):
    """open_clip's "ViT-B-32" uses nn.GELU unless told; OpenAI's weights need QuickGELU in both towers."""
    import open_clip

    create = open_clip.create_model_and_transforms

    def random_weights(arch, pretrained, **kwargs):  # the same build, without downloading the weights
        return create(arch, pretrained=None, **kwargs)

    monkeypatch.setattr(registry, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(registry, "_clip_cached", lambda arch, tag: True)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", random_weights)
    model = registry.load_clip("ViT-B-32").model
    for tower in (model.visual.transformer, model.transformer):
        assert isinstance(tower.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)


def test_a_clip_weights_file_downloaded_by_hand_is_used_offline_with_quick_gelu(monkeypatch, tmp_path):
    import open_clip

    seen = {}

    def fake_create(arch, pretrained, device, force_quick_gelu=False):
        seen.update(pretrained=pretrained, quick_gelu=force_quick_gelu)
        raise RuntimeError("stop here: building the model is not what this test is about")

    weights = tmp_path / "open_clip_pytorch_model.bin"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(registry, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(registry, "_clip_cached", lambda arch, tag: False)  # nothing in the hub cache
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    with pytest.raises(registry.WeightsUnavailable, match=r"pretrained=FILE"):
        registry.load_clip("ViT-B-32", pretrained=str(weights))
    assert seen == {"pretrained": str(weights), "quick_gelu": True}  # tried the file, built as OpenAI's CLIP needs
    with pytest.raises(registry.WeightsUnavailable, match=r"pretrained=FILE"):  # no file: the advice, at once
        registry.load_clip("ViT-B-32")


def test_offline_advice_says_where_each_kind_of_file_goes(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(registry.WeightsUnavailable) as editor:
        registry.official_editor("pixar", base_url="http://127.0.0.1:9/", cache_dir=tmp_path / "editors")
    assert f"put it at {tmp_path / 'editors'}" in str(editor.value) and "HF_ENDPOINT" not in str(editor.value)
    with pytest.raises(registry.WeightsUnavailable) as lpips:
        registry.load_lpips()
    assert f"put it in {tmp_path / 'torch' / 'hub' / 'checkpoints'}" in str(lpips.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(registry.WeightsUnavailable, match=r"latent_scale=1\.0"):
        registry.load_ldm("ldm_celebahq")


def test_a_clip_of_another_input_size_gets_resized_images():
    from asyrp_edu.tiny_clip import TINY_CLIP_CONFIG, TinyClip, build_tiny_clip

    config = {**TINY_CLIP_CONFIG, "vision_cfg": {**TINY_CLIP_CONFIG["vision_cfg"], "image_size": 48, "patch_size": 8}}
    clip = TinyClip(build_tiny_clip(config))
    images = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_()
    features = clip.encode_image(images)
    assert features.shape == (2, 64) and torch.allclose(features.norm(dim=-1), torch.ones(2), atol=1e-5)
    features.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_the_hub_check_asks_the_mirror_that_hf_endpoint_names(monkeypatch):
    import socket

    asked = []

    def connect(address, timeout):
        asked.append(address)
        raise OSError("no network here")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert not registry.hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    registry.hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", "http://10.0.0.5:8080/")
    registry.hub_reachable()
    registry.hub_reachable("download.pytorch.org")
    monkeypatch.setenv("HF_ENDPOINT", "hf-mirror.com")
    registry.hub_reachable()
    assert asked == [("huggingface.co", 443), ("hf-mirror.com", 443), ("10.0.0.5", 8080),
                     ("download.pytorch.org", 443), ("hf-mirror.com", 443)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not registry.hub_reachable() and len(asked) == 5  # offline: not even asked
