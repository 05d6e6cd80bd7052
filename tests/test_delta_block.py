"""f_t: the DeltaBlock loads the authors' released CelebA-HQ editors exactly and refuses what does not fit."""
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from asyrp_edu import hspace
from asyrp_edu.delta_block import OFFICIAL_KEYS, DeltaBlock, check_compatible, load_official_delta_block
from asyrp_edu.models import CELEBA_HQ_UNET_CONFIG, TOY_UNET_CONFIG, build_unet

# shared/ lies beside the checkout (here and in CI); ASYRP_EDU_REFERENCE points elsewhere if needed
CHECKPOINTS = Path(os.environ.get("ASYRP_EDU_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"
                                  / "asyrp_official")) / "checkpoints"
CELEBA_EDITORS = ["smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth", "pixar_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth"]
DOG_EDITOR = CHECKPOINTS / "dog_happy_LC_dog_t999_ninv40_ngen40_0.pth"
needs_checkpoints = pytest.mark.skipif(not CHECKPOINTS.is_dir(), reason=f"no authors' editors at {CHECKPOINTS}")


def _raw_state(path: Path) -> dict[str, torch.Tensor]:
    """The authors' state dict as stored, without going through the loader under test."""
    return torch.load(path, map_location="cpu", weights_only=True)["0"]


def _authors_forward(state: dict[str, torch.Tensor], h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """DeltaBlock.forward of Asyrp_official (models/ddpm/diffusion.py), written out with functional ops."""
    a = F.conv2d(h, state["conv1.weight"], state["conv1.bias"])
    a = a + F.linear(F.silu(temb), state["temb_proj.weight"], state["temb_proj.bias"])[:, :, None, None]
    a = F.group_norm(a, 32, state["norm2.weight"], state["norm2.bias"], eps=1e-6)
    return F.conv2d(F.silu(a), state["conv2.weight"], state["conv2.bias"])


@pytest.fixture(scope="module")
def celeba_temb():
    """temb (2, 512) from the time embedding of a random CelebA-HQ-config U-Net (the rest stays on "meta")."""
    from diffusers import UNet2DModel

    with torch.device("meta"):
        unet = UNet2DModel(**CELEBA_HQ_UNET_CONFIG)
    unet.time_embedding.to_empty(device="cpu")
    torch.manual_seed(0)
    for layer in (unet.time_embedding.linear_1, unet.time_embedding.linear_2):
        layer.reset_parameters()
    with torch.no_grad():
        return hspace.temb(unet, torch.tensor([999, 500]), 2)


@needs_checkpoints
@pytest.mark.parametrize("name", CELEBA_EDITORS)
def test_official_celeba_editor_loads_strictly_and_runs(name, celeba_temb):
    state = _raw_state(CHECKPOINTS / name)
    assert set(state) == OFFICIAL_KEYS
    fresh = DeltaBlock(512, 512)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    block = load_official_delta_block(CHECKPOINTS / name)
    assert (block.channels, block.temb_channels) == (512, 512) and not block.training
    for key, value in block.state_dict().items():
        assert torch.equal(value, state[key]), key
    h = torch.randn(2, 512, 8, 8, generator=torch.Generator().manual_seed(0))
    assert celeba_temb.shape == (2, 512)
    with torch.no_grad():
        delta_h = block(h, celeba_temb)
    assert delta_h.shape == (2, 512, 8, 8) and torch.isfinite(delta_h).all()
    assert delta_h.abs().max() > 0
    assert_close(delta_h, _authors_forward(state, h, celeba_temb), atol=1e-5, rtol=1e-5)
    check_compatible(block, h.shape, celeba_temb.shape[1])  # fits the CelebA-HQ model


@needs_checkpoints
def test_module_prefix_and_bare_state_dicts_load(tmp_path):
    state = _raw_state(CHECKPOINTS / CELEBA_EDITORS[0])
    torch.save({"0": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "parallel.pth")
    torch.save(state, tmp_path / "bare.pth")
    for file in ("parallel.pth", "bare.pth"):
        block = load_official_delta_block(tmp_path / file)
        assert torch.equal(block.conv2.weight, state["conv2.weight"])


@needs_checkpoints
def test_guided_diffusion_editor_is_refused():
    with pytest.raises(ValueError, match=r"guided-diffusion.*in_layers.*conv1/temb_proj/norm2/conv2"):
        load_official_delta_block(DOG_EDITOR)


def test_files_that_are_not_editors_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="Asyrp_official"):
        load_official_delta_block(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_official_delta_block(tmp_path / "text.pth")
    torch.save({"0": {"conv1.weight": torch.zeros(8, 8, 1, 1)}}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing \['conv1.bias'"):
        load_official_delta_block(tmp_path / "partial.pth")
    torch.save({"optimizer": {}, "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an Asyrp editor checkpoint"):
        load_official_delta_block(tmp_path / "other.pth")
    wrong = DeltaBlock(64, 128).state_dict()
    wrong["norm2.weight"] = torch.ones(32)
    torch.save({"0": wrong}, tmp_path / "wrong_size.pth")
    with pytest.raises(ValueError, match="does not fit DeltaBlock"):
        load_official_delta_block(tmp_path / "wrong_size.pth")


@needs_checkpoints
def test_celeba_editor_does_not_fit_the_toy_model():
    block = load_official_delta_block(CHECKPOINTS / CELEBA_EDITORS[0])
    torch.manual_seed(0)
    toy = build_unet(TOY_UNET_CONFIG).eval()
    with torch.no_grad():
        h = hspace.encode(toy, torch.zeros(1, 3, 32, 32), 500).h
    assert h.shape == (1, 96, 8, 8)
    with pytest.raises(ValueError, match=r"512 channels.*\(96 channels\).*DeltaBlock\(96, 128\)"):
        check_compatible(block, h.shape, hspace.temb_dim(toy))
    with pytest.raises(ValueError, match=r"512-d timestep embedding.*128-d"):
        check_compatible(block, (1, 512, 8, 8), 128)
    check_compatible(DeltaBlock(96, 128), h.shape, hspace.temb_dim(toy))  # a fresh one fits


def test_fresh_block_starts_at_zero_and_can_learn():
    block = DeltaBlock(96, 128)
    h, temb = torch.randn(2, 96, 8, 8), torch.randn(2, 128)
    delta_h = block(h, temb)
    assert delta_h.shape == h.shape and torch.equal(delta_h, torch.zeros_like(h))
    (delta_h * torch.randn_like(h)).sum().backward()
    assert block.conv2.weight.grad.abs().sum() > 0
    assert block(h).shape == h.shape  # temb=None: the time-independent variant
    with pytest.raises(ValueError, match="divisible by 32"):
        DeltaBlock(48, 128)
