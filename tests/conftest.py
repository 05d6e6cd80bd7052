"""Shared fixtures: small random diffusers U-Nets, a fixed torch seed, one thread per test process."""
import os

import pytest
import torch

os.environ.setdefault("ASYRP_EDU_SMOKE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_unet():
    """A random UNet2DModel with the toy config's block types at 16², small enough for many calls."""
    from asyrp_edu.models import TOY_UNET_CONFIG, build_unet

    torch.manual_seed(0)
    config = dict(TOY_UNET_CONFIG, sample_size=16, block_out_channels=(32, 32, 32))
    return build_unet(config).eval()
