"""Editing/boosting intervals from the authors' LPIPS tables, and their bad-input errors."""
import os
from pathlib import Path

import pytest
import torch

from asyrp_edu.ddim import Schedule
from asyrp_edu.intervals import (REFERENCE_DIR, DistanceTable, check_intervals, compute_tables, reference_table,
                                 t_boost_from_table, t_edit_from_table, toy_perceptual_distance)

# shared/ lies beside the checkout (here and in CI); ASYRP_EDU_REFERENCE points elsewhere if needed
SHARED = Path(os.environ.get("ASYRP_EDU_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"
                             / "asyrp_official")) / "lpips"


def test_shipped_tables_equal_the_authors_files():
    if not SHARED.is_dir():
        pytest.skip("shared/reference is not next to this checkout")
    for ours in REFERENCE_DIR.glob("*.tsv"):
        assert ours.read_bytes() == (SHARED / ours.name).read_bytes(), ours.name


def test_celeba_t_boost_is_the_papers_167():
    # The paper's CelebA-HQ setting uses t_boost = 167: the first t where LPIPS(x0, x_t) reaches 1.2.
    assert t_boost_from_table(reference_table("celeba", "x")) == 167


def test_t_edit_grows_with_the_text_change():
    table = reference_table("celeba", "x0_t")
    t_edits = [t_edit_from_table(table, c) for c in (0.7, 0.8, 0.9, 1.0)]
    assert t_edits == sorted(t_edits) and t_edits[0] < t_edits[-1]
    # the paper's smiling editor used t_edit = 513 for a text cosine near 0.9
    assert abs(t_edit_from_table(table, 0.9) - 513) <= 5
    d = dict(zip(table.t, table.distance))
    assert d[t_edits[1]] >= 0.33 * 0.8 > d[t_edits[1] - 1]


def test_bad_intervals_are_clear_errors():
    with pytest.raises(ValueError, match="outside"):
        check_intervals(1200, 100)
    with pytest.raises(ValueError, match="t_boost=500 > t_edit=300"):
        check_intervals(300, 500)
    with pytest.raises(ValueError, match="cosine"):
        t_edit_from_table(reference_table(), 0.0)


def test_table_round_trip_and_bad_file(tmp_path):
    table = DistanceTable([1, 2, 3], [0.1, 0.2, 0.3])
    table.write(tmp_path / "t.tsv")
    assert DistanceTable.read(tmp_path / "t.tsv") == table
    (tmp_path / "bad.tsv").write_text("1\t2\t3\n")
    with pytest.raises(ValueError, match="two tab-separated numbers"):
        DistanceTable.read(tmp_path / "bad.tsv")
    for text, match in (("10\t0.1\n20\tabc\n", r"bad.tsv:2: .*'20\\tabc'"), ("\n", "holds no rows")):
        (tmp_path / "bad.tsv").write_text(text)
        with pytest.raises(ValueError, match=match):
            DistanceTable.read(tmp_path / "bad.tsv")
    (tmp_path / "bad.tsv").write_text("inf\t0.3\n")  # float("inf") parses, but is no timestep
    with pytest.raises(ValueError, match="bad.tsv:1: "):
        DistanceTable.read(tmp_path / "bad.tsv")
    (tmp_path / "bad.tsv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match="bad.tsv is not a text file"):
        DistanceTable.read(tmp_path / "bad.tsv")


def test_toy_tables_rise_with_t():
    from asyrp_edu import toy

    schedule = Schedule.linear()
    images, _ = toy.sample(8, seed=0, heldout=True)
    # a zero ε-predictor: P_t = x_t / sqrt(alpha_bar_t), which drifts away from x0 as t grows
    p_table, x_table = compute_tables(lambda x, t: torch.zeros_like(x), images, schedule, stride=100,
                                      progress=False)
    assert x_table.distance[0] < 0.5 * x_table.distance[-1] and p_table.distance[0] < 0.5 * p_table.distance[-1]
    assert x_table.t == p_table.t == list(range(100, 1000, 100))
    assert toy_perceptual_distance(images, images).abs().max() == 0
    # a constant offset c has no edges, so each pyramid level adds exactly c and the mean over the levels is c
    assert torch.allclose(toy_perceptual_distance(images, images + 0.1), torch.full((8,), 0.1), atol=1e-6)


def test_tables_match_the_forward_process_by_hand():
    from asyrp_edu import toy

    schedule = Schedule.linear()
    images, _ = toy.sample(8, seed=0, heldout=True)
    alpha_bar = schedule.alpha_bar.double()

    def oracle(x_t, t):  # the true noise, solved from x_t = sqrt(alpha_bar)·x0 + sqrt(1 − alpha_bar)·ε
        a = alpha_bar[t].view(-1, 1, 1, 1).float()
        return (x_t - a.sqrt() * images) / (1 - a).sqrt()

    def mse(a, b):
        return (a - b).pow(2).mean(dim=(1, 2, 3))

    p_table, x_table = compute_tables(oracle, images, schedule, distance=mse, stride=100, progress=False)
    assert max(p_table.distance) < 1e-8  # a perfect ε-predictor gives P_t = x0 at every t
    # E|x_t − x0|² = (sqrt(alpha_bar) − 1)²·E[x0²] + (1 − alpha_bar), with ε ~ N(0, 1)
    x0_sq = float(images.double().pow(2).mean())
    for t, measured in zip(x_table.t, x_table.distance):
        a = float(alpha_bar[t])
        assert measured == pytest.approx((a ** 0.5 - 1) ** 2 * x0_sq + (1 - a), rel=0.05), t


def test_cli_prints_both_intervals(capsys):
    from asyrp_edu.cli import main

    main(["intervals", "--text-cosine", "0.9"])
    assert "t_edit = 514, t_boost = 167" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--text-cosine"):
        main(["intervals"])


def test_toy_distance_is_calibrated_to_the_authors_lpips_curve():
    from asyrp_edu.intervals import TOY_DISTANCE_SCALE, calibration_scale, toy_tables
    from asyrp_edu.models import load_toy_ddpm

    unet, schedule = load_toy_ddpm()
    raw, _ = toy_tables(unet, schedule, n=16, stride=20, scale=1.0, progress=False)
    fitted = calibration_scale(raw, reference_table("celeba", "x0_t"))
    assert fitted == pytest.approx(TOY_DISTANCE_SCALE, rel=0.1)  # re-fit on the shipped model: the constant holds
    calibrated, _ = toy_tables(unet, schedule, n=16, stride=20, progress=False)
    # the same faces and noise, so the shipped tables are the raw distances × the constant
    assert calibrated.distance == pytest.approx([TOY_DISTANCE_SCALE * d for d in raw.distance], rel=1e-5)
    reference = dict(zip(*[reference_table("celeba", "x0_t").t, reference_table("celeba", "x0_t").distance]))
    gaps = [abs(d - reference[t]) for t, d in zip(calibrated.t, calibrated.distance) if 200 <= t <= 700]
    assert max(gaps) < 0.1, gaps  # the same curve (measured: 0.05 at most), a t_edit a few steps away at most


class _CountingEps:
    """A zero ε-predictor that counts its calls, to tell a cache hit from a new measurement."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return torch.zeros_like(x)


def test_tables_are_cached_per_model_and_read_back_exactly(tmp_path):
    from asyrp_edu import toy
    from asyrp_edu.intervals import cached_tables

    schedule, images = Schedule.linear(), toy.sample(4, seed=0, heldout=True)[0]
    eps = _CountingEps()
    first = cached_tables(eps, images, schedule, tmp_path, "model-a", stride=100, progress=False)
    assert eps.calls == 9 and len(list(tmp_path.glob("*.tsv"))) == 2  # t = 100 … 900; the authors' two-file format
    again = cached_tables(eps, images, schedule, tmp_path, "model-a", stride=100, progress=False)
    assert eps.calls == 9 and again == first  # read back bit for bit, no model call
    cached_tables(eps, images, schedule, tmp_path, "model-b", stride=100, progress=False)
    assert eps.calls == 18  # another model is measured anew
    cached_tables(eps, images[:2], schedule, tmp_path, "model-a", stride=100, progress=False)
    assert eps.calls == 27  # so are other images
    other_schedule = Schedule.linear(beta_end=0.012)
    assert cached_tables(eps, images, other_schedule, tmp_path, "model-a", stride=100, progress=False) != first
    assert eps.calls == 36  # and the same model under another noise schedule


def test_half_a_cached_pair_is_measured_again(tmp_path):
    from asyrp_edu import toy
    from asyrp_edu.intervals import cached_tables

    schedule, images, eps = Schedule.linear(), toy.sample(4, seed=0, heldout=True)[0], _CountingEps()
    cached_tables(eps, images, schedule, tmp_path, "m", stride=100, progress=False)
    next(tmp_path.glob("*_x.tsv")).unlink()  # as if interrupted between the two atomic writes
    cached_tables(eps, images, schedule, tmp_path, "m", stride=100, progress=False)
    assert eps.calls == 18 and len(list(tmp_path.glob("*.tsv"))) == 2


@pytest.mark.parametrize("damage", ["cut", "garbled", "nan"])
def test_a_damaged_cached_pair_is_measured_again(tmp_path, damage):
    from asyrp_edu import toy
    from asyrp_edu.intervals import cached_tables

    schedule, images, eps = Schedule.linear(), toy.sample(4, seed=0, heldout=True)[0], _CountingEps()
    first = cached_tables(eps, images, schedule, tmp_path, "m", stride=100, progress=False)
    table = next(tmp_path.glob("*_x0_t.tsv"))
    lines = table.read_text().splitlines(keepends=True)
    table.write_text({"cut": "".join(lines[:5]), "garbled": "".join(lines[:5]) + "600\t0.\x00\n",
                      "nan": "".join(lines[:-1]) + "900\tnan\n"}[damage])
    with pytest.warns(UserWarning, match="not used"):
        again = cached_tables(eps, images, schedule, tmp_path, "m", stride=100, progress=False)
    assert eps.calls == 18 and again == first


def test_a_non_finite_measurement_is_refused_not_cached(tmp_path):
    from asyrp_edu import toy
    from asyrp_edu.intervals import cached_tables

    images = toy.sample(2, seed=0, heldout=True)[0]
    with pytest.raises(FloatingPointError, match=r"d\(x0, P_t\) is not finite at t = \[100"):
        cached_tables(_CountingEps(), images, Schedule.linear(), tmp_path, "m", stride=100, progress=False,
                      distance=lambda a, b: torch.full((a.shape[0],), float("nan")))
    assert not list(tmp_path.glob("*.tsv"))


def test_images_named_by_a_key_are_drawn_only_when_measuring(tmp_path):
    from asyrp_edu import toy
    from asyrp_edu.intervals import cached_tables

    schedule, drawn = Schedule.linear(), []

    def draw():
        drawn.append(1)
        return toy.sample(2, seed=0, heldout=True)[0]

    for _ in range(2):
        cached_tables(_CountingEps(), draw, schedule, tmp_path, "m", stride=100, progress=False, images_key="two")
    assert drawn == [1]  # the second call is a cache hit and draws nothing
    with pytest.raises(ValueError, match="images_key"):
        cached_tables(_CountingEps(), draw, schedule, tmp_path, "m", stride=100, progress=False)


def test_bad_stride_or_no_images_are_clear_errors():
    schedule, images = Schedule.linear(), torch.zeros(2, 3, 8, 8)
    for stride in (0, 1000):
        with pytest.raises(ValueError, match="stride"):
            compute_tables(_CountingEps(), images, schedule, stride=stride, progress=False)
    with pytest.raises(ValueError, match="at least one image"):
        compute_tables(_CountingEps(), images[:0], schedule, stride=100, progress=False)


def test_bad_settings_are_refused_before_anything_slow_runs(tmp_path, monkeypatch):
    """A real model's samples take minutes and LPIPS is a download: a wrong stride or n is refused first."""
    from asyrp_edu import registry, world
    from asyrp_edu.intervals import cached_tables

    def draw():
        raise AssertionError("the images were drawn before the stride was checked")

    with pytest.raises(ValueError, match="stride"):
        cached_tables(_CountingEps(), draw, Schedule.linear(), tmp_path, "m", stride=0, images_key="k")
    with pytest.raises(ValueError, match="'noised', 'inversion'"):
        cached_tables(_CountingEps(), draw, Schedule.linear(), tmp_path, "m", images_key="k", along="backwards")
    monkeypatch.setattr(registry, "load_lpips", lambda net, device: pytest.fail("LPIPS loaded before n was checked"))
    w = world.World("model", torch.nn.Identity(), Schedule.linear(), clip=None, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="at least one image"):
        w.measure_tables(n=0)


def test_a_real_world_measures_its_own_tables_with_lpips(tmp_path, monkeypatch):
    """A model folder outside the paper's datasets: LPIPS on its own samples, cached (LPIPS faked: offline)."""
    from asyrp_edu import registry, world
    from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet
    from asyrp_edu.tiny_clip import load_tiny_clip

    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "model" / "unet")
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip())
    asked = []

    def fake_lpips(net, device):
        asked.append(net)
        return lambda a, b: (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)  # LPIPS's (B, 1, 1, 1)

    monkeypatch.setattr(registry, "load_lpips", fake_lpips)
    monkeypatch.chdir(tmp_path)  # "model" below is a folder here
    monkeypatch.setenv("ASYRP_EDU_CACHE", str(tmp_path / "cache"))  # the default cache: $ASYRP_EDU_CACHE
    with pytest.warns(UserWarning, match="measure_tables"):  # not measured yet: the authors' CelebA-HQ tables
        w = world.load_world("model", device="cpu")
    assert w.tables() == (reference_table("celeba", "x0_t"), reference_table("celeba", "x"))
    w.num_steps = 4  # the samples it measures on
    edit, boost = w.measure_tables(n=2, stride=100, progress=False)
    assert asked == ["alex"] and w.tables() == (edit, boost) and edit.t == list(range(100, 1000, 100))
    assert len(list((tmp_path / "cache").glob("distance_*.tsv"))) == 2
    assert edit != reference_table("celeba", "x0_t")  # no longer the authors' CelebA-HQ table
    assert w.cached_own_tables(n=2, stride=100) == (edit, boost) and w.cached_own_tables() is None
    # tables measured along the inversion (the authors' way, `intervals --along inversion`) are found too, first
    along_inversion = w.measure_tables(n=2, stride=100, progress=False, along="inversion")
    assert along_inversion != (edit, boost)
    assert w.cached_own_tables(n=2, stride=100) == along_inversion
    assert w.cached_own_tables(n=2, stride=100, along="noised") == (edit, boost)


def test_measuring_with_a_given_text_cosine_loads_no_clip(tmp_path, monkeypatch):
    """`intervals --world FOLDER --text-cosine C` needs the DDPM and LPIPS only: offline, CLIP may be missing."""
    from asyrp_edu import registry, world
    from asyrp_edu.cli import main
    from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet

    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "model")
    monkeypatch.setattr(registry, "load_clip", lambda *a, **k: pytest.fail("loaded a CLIP"))
    with pytest.warns(UserWarning, match="measure_tables"):
        assert world.load_world(str(tmp_path / "model"), device="cpu", clip=None).clip is None
    asked = []
    monkeypatch.setattr(world.World, "measure_tables", lambda self, **k: asked.append(k) or
                        (reference_table("celeba", "x0_t"), reference_table("celeba", "x")))
    main(["intervals", "--world", str(tmp_path / "model"), "--text-cosine", "0.5", "--cache-dir", str(tmp_path)])
    # the defaults are those load_world looks for (measured at others, the tables would never be found again)
    assert asked == [{"n": 16, "stride": 10, "cache_dir": tmp_path, "along": "noised"}]


def test_a_real_world_loads_its_own_tables_once_measured(tmp_path, monkeypatch):
    """load_world(folder) picks up the tables measure_tables() cached at its defaults, with no warning and no LPIPS."""
    import warnings

    from asyrp_edu import registry, world
    from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet
    from asyrp_edu.tiny_clip import load_tiny_clip

    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "model" / "unet")
    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "other" / "unet")  # the same shape, other weights
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip())
    monkeypatch.setattr(registry, "load_lpips",
                        lambda net, device: lambda a, b: (a - b).abs().mean(dim=(1, 2, 3), keepdim=True))
    monkeypatch.setenv("ASYRP_EDU_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning):
        w = world.load_world("model", device="cpu")
    measured = w.measure_tables(progress=False)  # the defaults: 16 of its own samples, every 10th t
    monkeypatch.setattr(registry, "load_lpips", lambda net, device: pytest.fail("a cached table needs no LPIPS"))
    monkeypatch.chdir(tmp_path / "other")  # another working directory (a notebook in notebooks/): the same cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = world.load_world(str(tmp_path / "model"), device="cpu")
    assert again.tables() == measured
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="measure_tables"):  # another model's weights: not its tables
        assert world.load_world("other", device="cpu").tables()[0] == reference_table("celeba", "x0_t")


def test_the_cache_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """settings.cache_dir: an explicit folder, else $ASYRP_EDU_CACHE, else ~/.cache/asyrp_edu; never the cwd."""
    from pathlib import Path

    from asyrp_edu.settings import cache_dir

    monkeypatch.setenv("ASYRP_EDU_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("ASYRP_EDU_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    homes = set()
    for where in (tmp_path, tmp_path / "c"):
        where.mkdir(exist_ok=True)
        monkeypatch.chdir(where)
        homes.add(cache_dir())
    assert homes == {tmp_path / "home" / ".cache" / "asyrp_edu"} and Path(homes.pop()).is_absolute()


def test_tables_along_the_inversion_follow_the_ddim_recurrence_by_hand():
    """along="inversion": x_t = sqrt(ᾱ_t)·P_s + sqrt(1 − ᾱ_t)·ε_θ(x_s, s) from x0 up, as the authors' code measures.

    With the exact noise of each x_s, P_s is x0 and ε stays the first step's ε_θ(x0, 0) = c·x0, c = (1 − sqrt(ᾱ_0)) /
    sqrt(1 − ᾱ_0); so x_t = (sqrt(ᾱ_t) + c·sqrt(1 − ᾱ_t))·x0, with no fresh noise at all."""
    from asyrp_edu import toy

    schedule = Schedule.linear()
    images, _ = toy.sample(4, seed=0, heldout=True)
    alpha_bar = schedule.alpha_bar.double()

    def oracle(x_t, t):
        a = alpha_bar[t].view(-1, 1, 1, 1).float()
        return (x_t - a.sqrt() * images) / (1 - a).sqrt()

    def mse(a, b):
        return (a - b).pow(2).mean(dim=(1, 2, 3))

    p_table, x_table = compute_tables(oracle, images, schedule, distance=mse, stride=100, progress=False,
                                      along="inversion")
    assert max(p_table.distance) < 1e-8
    c = (1 - float(alpha_bar[0]) ** 0.5) / (1 - float(alpha_bar[0])) ** 0.5
    x0_sq = float(images.double().pow(2).mean())
    for t, measured in zip(x_table.t, x_table.distance):
        a = float(alpha_bar[t])
        assert measured == pytest.approx((a ** 0.5 + c * (1 - a) ** 0.5 - 1) ** 2 * x0_sq, rel=1e-3), t
    oracle_x = x_table.distance
    # an inexact model, replayed by hand: ε_θ changes along the way and each step must start from the last x_s
    def model(x, t):
        return 0.3 * x + (t.float() / 1000).view(-1, 1, 1, 1)

    x_s, a_s = images.double(), 1.0  # x0 as the clean image at s = −1 (ᾱ = 1), its noise read at t = 0
    eps = model(images, torch.zeros(4, dtype=torch.long)).double()
    expected_x, expected_p = [], []
    for t in range(100, 1000, 100):
        a = float(alpha_bar[t])
        P_s = (x_s - (1 - a_s) ** 0.5 * eps) / a_s ** 0.5
        x_s, a_s = a ** 0.5 * P_s + (1 - a) ** 0.5 * eps, a
        eps = model(x_s.float(), torch.full((4,), t)).double()
        P_t = ((x_s - (1 - a) ** 0.5 * eps) / a ** 0.5).clamp(-1, 1)
        expected_x.append(float(mse(x_s, images.double()).mean()))
        expected_p.append(float(mse(P_t, images.double()).mean()))
    p_table, x_table = compute_tables(model, images, schedule, distance=mse, stride=100, progress=False,
                                      along="inversion")
    assert x_table.distance == pytest.approx(expected_x, rel=1e-4)
    assert p_table.distance == pytest.approx(expected_p, rel=1e-4)
    noised = compute_tables(oracle, images, schedule, distance=mse, stride=100, progress=False)[1]
    assert noised.distance[-1] > 3 * oracle_x[-1]  # fresh noise lies far from x0: (1 − ᾱ) more
    with pytest.raises(ValueError, match="'noised', 'inversion'"):
        compute_tables(oracle, images, schedule, distance=mse, stride=100, progress=False, along="forward")


def test_cli_measures_a_worlds_tables(capsys, tmp_path):
    from asyrp_edu.cli import main

    main(["intervals", "--world", "toy", "--n", "2", "--stride", "100", "--cache-dir", str(tmp_path),
          "--text-cosine", "0.4"])
    out = capsys.readouterr().out
    assert "toy: distance tables on 2 images" in out and "t_edit = " in out
    assert len(list(tmp_path.glob("distance_*.tsv"))) == 2
    main(["intervals", "--world", "toy", "--n", "2", "--stride", "100", "--cache-dir", str(tmp_path),
          "--text-cosine", "0.4", "--along", "inversion"])
    assert "along the DDIM inversion" in capsys.readouterr().out
    assert len(list(tmp_path.glob("distance_*.tsv"))) == 4  # a pair of its own, not the noised pair read back
    for world_only in (["--along", "inversion"], ["--n", "2"], ["--stride", "5"], ["--cache-dir", str(tmp_path)]):
        with pytest.raises(SystemExit, match=f"{world_only[0]} set how --world measures its own tables; give --world"):
            main(["intervals", "--text-cosine", "0.4", *world_only])  # refused: the authors' table ignores them
    with pytest.raises(SystemExit, match="drop --edit-table"):
        main(["intervals", "--world", "toy", "--edit-table", "x.tsv", "--text-cosine", "0.4"])
