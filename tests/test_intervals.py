"""Editing/boosting intervals from the authors' LPIPS tables, and their bad-input errors."""
from pathlib import Path

import pytest
import torch

from asyrp_edu.ddim import Schedule
from asyrp_edu.intervals import (REFERENCE_DIR, DistanceTable, check_intervals, compute_tables, reference_table,
                                 t_boost_from_table, t_edit_from_table, toy_perceptual_distance)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "asyrp_official" / "lpips"


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
    with pytest.raises(ValueError, match="two tab-separated columns"):
        DistanceTable.read(tmp_path / "bad.tsv")


def test_toy_tables_rise_with_t():
    from asyrp_edu import toy

    schedule = Schedule.linear()
    images, _ = toy.sample(8, seed=0, heldout=True)
    # a zero ε-predictor: P_t = x_t / sqrt(alpha_bar_t), which drifts away from x0 as t grows
    p_table, x_table = compute_tables(lambda x, t: torch.zeros_like(x), images, schedule, stride=100,
                                      progress=False)
    assert x_table.distance[0] < 0.5 * x_table.distance[-1]
    assert toy_perceptual_distance(images, images).abs().max() == 0


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
    reference = dict(zip(*[reference_table("celeba", "x0_t").t, reference_table("celeba", "x0_t").distance]))
    gaps = [abs(d - reference[t]) for t, d in zip(calibrated.t, calibrated.distance) if 200 <= t <= 700]
    assert max(gaps) < 0.25, gaps  # the same curve, within LPIPS's own spread across datasets
