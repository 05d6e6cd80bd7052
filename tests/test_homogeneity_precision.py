"""scripts/homogeneity_precision.py: its pooled share and bootstrap interval read known per-face changes right."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import homogeneity_precision  # noqa: E402  (a script, importable once scripts/ is on the path)


def test_the_share_is_the_ratio_of_means_and_the_interval_holds_it():
    g = torch.Generator().manual_seed(0)
    per_image = 0.8 + 0.3 * torch.randn(256, generator=g)
    global_ = 0.88 * per_image + 0.05 * torch.randn(256, generator=g)
    share, lo, hi = homogeneity_precision.share_with_interval(per_image, global_)
    assert share == pytest.approx(0.88, abs=0.01)
    assert lo < share < hi and hi - lo < 0.05  # paired resampling: tight when the two changes move together


def test_a_global_dh_that_does_exactly_what_f_t_does_gets_a_zero_width_interval_at_one():
    per_image = torch.linspace(0.2, 1.2, 64)
    assert homogeneity_precision.share_with_interval(per_image, per_image.clone()) == pytest.approx((1, 1, 1))


def test_unpaired_or_mismatched_changes_are_refused():
    with pytest.raises(ValueError, match=r"two \(N,\) tensors"):
        homogeneity_precision.share_with_interval(torch.ones(64), torch.ones(63))
