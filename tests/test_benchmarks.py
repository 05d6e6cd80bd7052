"""The quick benchmarks still run and print their ratios (timings are read by people, not asserted here)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_asymmetric_step_cost_prints_both_ratios():
    out = run_benchmark("asymmetric_step_cost.py", "--size", "64", "--reps", "1")
    ratios = re.search(r"asymmetric / plain = ([0-9.]+) .*naive / plain = ([0-9.]+)", out)
    assert ratios, out
    flop_ratio = re.search(r"asymmetric\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)", out)
    assert flop_ratio and float(flop_ratio.group(1)) == pytest.approx(1.52, abs=0.05), out  # counted, not timed


def test_slider_latency_renders_the_same_image_both_ways():
    out = run_benchmark("slider_latency.py", "--steps", "4", "--repeats", "3")
    differ = re.search(r"traced and eager images differ by ([0-9.e+-]+)", out)
    assert differ and float(differ.group(1)) < 1e-4, out
    assert re.search(r"median traced \(the widgets\) [0-9.]+ s", out), out
    shares = [float(v) for v in re.findall(r"(-?[0-9.]+) %", out)]
    # "rest" is the total minus the timed stages, so the sum is 100 by construction; what can go wrong is a stage
    # timed twice (nested), which drives the rest below zero
    assert min(shares) >= 0 and sum(shares) == pytest.approx(100, abs=0.5), out


def test_toy_world_speed_prints_its_rate():
    out = run_benchmark("toy_world_speed.py")
    rows = re.findall(r"([0-9]+) images/s on one core\s+\(([0-9.]+)x the goal of 2000\)", out)
    assert len(rows) == 3, out
    assert all(float(ratio) == pytest.approx(int(rate) / 2000, abs=0.051) for rate, ratio in rows), out


def test_ddpm_train_precision_prints_the_ratio_and_the_choice():
    from asyrp_edu.settings import bf16_autocast_is_fast

    out = run_benchmark("ddpm_train_precision.py", "--batch-size", "2", "--steps", "1")
    times = re.search(r"float32 ([0-9.]+) s, bfloat16 autocast ([0-9.]+) s, bfloat16 / float32 = ([0-9.]+)", out)
    assert times, out
    fp32, bf16, ratio = (float(v) for v in times.groups())
    assert ratio == pytest.approx(bf16 / fp32, rel=0.05, abs=0.01), out
    picked = "bfloat16 autocast" if bf16_autocast_is_fast("cpu") else "float32"
    assert f"train-ddpm picks {picked} here" in out, out
