"""Images per second of the toy world's generator on one core (goal: >= 2,000 at 32x32).

Run: `python benchmarks/toy_world_speed.py`. Prints the rate and its ratio to the goal, measured in this run.
"""
import time

import torch

from asyrp_edu import toy

GOAL = 2000


def main() -> None:
    torch.set_num_threads(1)
    toy.sample(256, seed=0)  # warm-up
    for batch in (64, 256, 1024):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            toy.sample(batch, seed=n)
            n += batch
        rate = n / (time.perf_counter() - start)
        print(f"batch {batch:5d}: {rate:9.0f} images/s on one core  ({rate / GOAL:.1f}x the goal of {GOAL})")


if __name__ == "__main__":
    main()
