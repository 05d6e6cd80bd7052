"""The shipped cache (inversions of the notebooks' toy faces, the toy distance tables): current, equal to a fresh
measurement, and used only where it fits."""
import pytest
import torch
from safetensors import safe_open

import asyrp_edu.inversion_cache as inversion_cache
from asyrp_edu import shipped_cache, toy
from asyrp_edu.ddim import ddim_invert, unet_noise_model
from asyrp_edu.inversion_cache import cached_inversion, schedule_fingerprint, unet_fingerprint
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.shipped_cache import FACE_SETS, FIXED_POINT_ITERS, NUM_STEPS, SHIPPED_INVERSIONS


@pytest.fixture(scope="module")
def toy_ddpm():
    return load_toy_ddpm()


def test_the_file_was_built_with_the_shipped_toy_ddpm_and_holds_every_face_set(toy_ddpm):
    unet, schedule = toy_ddpm
    with safe_open(str(SHIPPED_INVERSIONS), "pt") as f:
        meta, names = f.metadata(), set(f.keys())
    # stale after retraining the toy DDPM: run `python -m asyrp_edu.shipped_cache` (module docstring)
    assert meta["toy_ddpm"] == unet_fingerprint(unet) and meta["schedule"] == schedule_fingerprint(schedule)
    model, sched = meta["toy_ddpm"], meta["schedule"]
    for n, seed, heldout in FACE_SETS:
        faces, _ = toy.sample(n, seed=seed, heldout=heldout)
        keys = {shipped_cache.face_key(model, sched, NUM_STEPS, FIXED_POINT_ITERS, f) for f in faces}
        assert keys <= names, (n, seed, heldout)


def test_shipped_x_T_equals_a_fresh_inversion(toy_ddpm):
    """Two faces inverted again here (120 passes of batch 2): the shipped x_T agree to float noise."""
    unet, schedule = toy_ddpm
    faces = toy.sample(4, seed=3, heldout=True)[0][1:3]
    shipped = shipped_cache.shipped_inversion(unet_fingerprint(unet), schedule_fingerprint(schedule), faces, NUM_STEPS,
                                        FIXED_POINT_ITERS)
    fresh = ddim_invert(unet_noise_model(unet), faces, schedule, NUM_STEPS, progress=False,
                        fixed_point_iters=FIXED_POINT_ITERS)
    assert shipped is not None and shipped.shape == fresh.shape
    assert (shipped - fresh).abs().max() < 1e-4


def test_cached_inversion_reads_shipped_faces_and_inverts_anything_else(toy_ddpm, tmp_path, monkeypatch):
    unet, schedule = toy_ddpm
    calls = []
    real_invert = inversion_cache.ddim_invert
    monkeypatch.setattr(inversion_cache, "ddim_invert", lambda *a, **k: calls.append(a[1].shape) or real_invert(*a, **k))
    faces = toy.sample(64, seed=0, heldout=True)[0][:3]  # a subset of a shipped set still hits
    x_T = cached_inversion(unet, schedule, faces, NUM_STEPS, tmp_path, progress=False,
                           fixed_point_iters=FIXED_POINT_ITERS)
    assert calls == [] and x_T.shape == faces.shape
    # another setting (plain inversion, 8 steps) or a face outside the sets: inverted as before
    cached_inversion(unet, schedule, faces[:1], 8, tmp_path, progress=False)
    other = toy.sample(2, seed=99, heldout=True)[0]
    cached_inversion(unet, schedule, other, 4, tmp_path, progress=False, fixed_point_iters=FIXED_POINT_ITERS)
    assert calls == [(1, 3, 32, 32), (2, 3, 32, 32)]
    # a shipped face with one pixel changed is another image
    changed = faces[:1].clone()
    changed[0, 0, 0, 0] += 0.1
    assert shipped_cache.shipped_inversion(unet_fingerprint(unet), schedule_fingerprint(schedule), changed, NUM_STEPS,
                                     FIXED_POINT_ITERS) is None


def test_another_model_misses(toy_ddpm):
    unet, schedule = toy_ddpm
    faces = toy.sample(4, seed=1, heldout=True)[0]
    sched = schedule_fingerprint(schedule)
    assert shipped_cache.shipped_inversion(unet_fingerprint(unet), sched, faces, NUM_STEPS, FIXED_POINT_ITERS) is not None
    assert shipped_cache.shipped_inversion("0" * 16, sched, faces, NUM_STEPS, FIXED_POINT_ITERS) is None


def test_shipped_toy_tables_are_the_measured_ones_and_are_read_instead_of_measuring(tmp_path, monkeypatch):
    import asyrp_edu.intervals as intervals
    from asyrp_edu.world import TOY, load_world

    with monkeypatch.context() as patch:
        patch.setattr(intervals, "compute_tables", lambda *a, **k: pytest.fail("measured instead of read"))
        shipped = load_world(TOY, device="cpu").measure_tables(cache_dir=tmp_path / "read", progress=False)
    fresh = load_world(TOY, device="cpu")
    monkeypatch.setattr(intervals, "shipped_tables_paths", lambda p, x: (tmp_path / "none_p", tmp_path / "none_x"))
    measured = fresh.measure_tables(cache_dir=tmp_path / "measured", progress=False)  # 16 faces, every 10th t: 12 s
    for a, b in zip(shipped, measured):
        assert a.t == b.t and max(abs(x - y) for x, y in zip(a.distance, b.distance)) < 1e-4
    # the t_edit and t_boost they give are the same
    assert fresh.intervals_for("a sad cartoon face", "a smiling cartoon face") == \
        load_world(TOY, device="cpu").intervals_for("a sad cartoon face", "a smiling cartoon face")
