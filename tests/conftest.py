"""Shared fixtures: small random diffusers U-Nets, a fixed torch seed, one thread per test process."""
import atexit
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("ASYRP_EDU_SMOKE", "1")
# Each run starts from an empty cache of tables and inversions, as on a fresh machine (the notebooks' kernels inherit
# this); without it they would read and fill the user's ~/.cache/asyrp_edu.
_CACHE = tempfile.mkdtemp(prefix="asyrp_edu_test_cache_")
os.environ["ASYRP_EDU_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_unet():
    """A random UNet2DModel with the toy config's block types at 16², small enough for many calls."""
    from asyrp_edu.models import TOY_UNET_CONFIG, build_unet

    torch.manual_seed(0)
    config = dict(TOY_UNET_CONFIG, sample_size=16, block_out_channels=(32, 32, 32))
    return build_unet(config).eval()
