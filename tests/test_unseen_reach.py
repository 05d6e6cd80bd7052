"""scripts/unseen_reach.py: its candidates change what they name, and its share and aim read a known change right."""
import sys
from pathlib import Path

import pytest
import torch

from asyrp_edu import toy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import unseen_reach  # noqa: E402  (a script, importable once scripts/ is on the path)


def _faces(n: int = 16):
    attrs = toy.sample_attributes(n, seed=3, heldout=True)
    return attrs, toy.render(attrs)


@pytest.mark.parametrize("name", list(unseen_reach.CANDIDATES))
def test_every_candidate_changes_the_faces_within_the_image_range(name):
    attrs, faces = _faces()
    target = unseen_reach.CANDIDATES[name][1](attrs, faces.clone())
    assert target.shape == faces.shape and target.min() >= -1 and target.max() <= 1
    changed = (target - faces).abs().flatten(1).amax(1) > 0.1
    assert changed.any(), f"{name} draws nothing new"
    assert (unseen_reach.CANDIDATES[name][1](attrs, faces.clone()) == target).all()  # deterministic


def test_red_glasses_recolour_only_the_faces_that_wear_glasses_and_closed_eyes_keep_them():
    attrs, faces = _faces()
    red = unseen_reach.red_glasses(attrs, faces.clone())
    moved = (red - faces).abs().flatten(1).amax(1) > 0.1
    assert torch.equal(moved, attrs["glasses"] > 0.5)
    closed = unseen_reach.closed_eyes(attrs, faces.clone())
    rims = (faces < -0.85).all(1, keepdim=True).expand_as(faces)  # rims and bridge, (0.05, 0.05, 0.05) in [0, 1]
    assert rims.any()
    assert (closed[rims] - faces[rims]).abs().max() < 0.05
    eyes_gone = (closed - faces).abs().flatten(1).amax(1) > 0.5
    assert eyes_gone.all()


def test_share_and_aim_of_known_changes():
    attrs, faces = _faces()
    target = unseen_reach.CANDIDATES["beard"][1](attrs, faces.clone())
    assert unseen_reach.share_and_aim(target, faces, target, faces) == pytest.approx((1.0, 1.0), abs=1e-5)
    half = faces + 0.5 * (target - faces)
    assert unseen_reach.share_and_aim(half, faces, target, faces) == pytest.approx((0.5, 1.0), abs=1e-5)
    assert unseen_reach.share_and_aim(faces, faces, target, faces)[0] == 0.0
    away = faces - (target - faces)
    assert unseen_reach.share_and_aim(away, faces, target, faces) == pytest.approx((-1.0, -1.0), abs=1e-5)


def test_the_new_styles_change_the_whole_picture_as_named():
    attrs, faces = _faces()
    dim = unseen_reach.dim_light(attrs, faces.clone())
    assert torch.allclose(dim + 1, (faces + 1) / 2)  # half the brightness, in [0, 1] terms
    grey = unseen_reach.greyscale(attrs, faces.clone())
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert (grey - faces).abs().amax() > 0.3  # the toy faces are colourful, so the colour really goes
    old = unseen_reach.sepia(attrs, faces.clone())
    assert (old[:, 0] >= old[:, 1]).all() and (old[:, 1] >= old[:, 2]).all()  # brown tones: R ≥ G ≥ B
