"""Measurements of the shipped toy DDPM that every fresh machine would repeat, shipped instead: a warm cache.

- **DDIM inversions of the toy faces the notebooks and the CLI edit.** Inverting with fixed-point iterations costs
  three U-Net passes per step (120 at 40 steps). On a slow 2-core CPU that was 75 s of `asyrp-edu train`'s 155 s,
  and 30–70 s of each of notebooks 04–06. Every one of these faces is drawn from a fixed seed (`FACE_SETS`), so
  their x_T ship in `weights/toy_inversions.safetensors`: one tensor per face, named by a hash of everything its
  x_T depends on (model, schedule, steps, iterations, the face's pixels). `inversion_cache.cached_inversion` looks
  there before it inverts.
- **The toy DDPM's distance tables** (t_edit and t_boost; 16 held-out faces, every 10th t; 12 s to measure), as
  the two TSVs `intervals.cached_tables` would write, under the same names, in `weights/`.

Any other image, model or setting is measured as before, so the cache only saves time and never changes a result
beyond float noise. Rebuild it after retraining the toy DDPM (about 5 minutes on 2 cores; `tests/test_shipped_cache.py`
fails while it is stale):

    python -m asyrp_edu.shipped_cache && python -m asyrp_edu.manifest
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .ddim import INVERSION_FIXED_POINT_ITERS
from .models import WEIGHTS_DIR, save_safetensors_atomic

SHIPPED_INVERSIONS = WEIGHTS_DIR / "toy_inversions.safetensors"
SHIPPED_TABLES_DIR = WEIGHTS_DIR  # distance_<hash>_x0_t.tsv and distance_<hash>_x.tsv, named as in the cache
NUM_STEPS, FIXED_POINT_ITERS = 40, INVERSION_FIXED_POINT_ITERS  # how the shipped toy editors invert

# (n, seed, heldout) of every `toy.sample` the notebooks and the CLI invert with the defaults
FACE_SETS: tuple[tuple[int, int, bool], ...] = (
    (64, 0, False),  # `asyrp-edu train` (--n-images 64)
    (32, 0, False),  # notebooks 03 and 04: the global Δh and f_t trained live
    (16, 0, False),  # notebook 05 and `asyrp-edu hspace`: Δh_t recorded for homogeneity
    (64, 0, True),  # `asyrp-edu evaluate` and `hspace`; notebook 04 judges the first 16
    (32, 0, True),  # notebook 06: combinations
    (16, 0, True),  # notebook 05: linearity and homogeneity
    (8, 1, True),  # notebook 04: new faces for the f_t just trained
    (4, 1, True),  # notebook 03
    (4, 3, True),  # notebook 05: the linearity strip
    (5, 4, True),  # notebook 06: the combination grid
)
PIXEL_STEPS = 4096  # the pixels are hashed rounded to 1/4096, so a last-bit difference in drawing a face still hits


def face_key(model: str, schedule: str, num_steps: int, fixed_point_iters: int, image: torch.Tensor) -> str:
    """The name of one face's x_T: a hash of the model's and the schedule's fingerprints, the settings and pixels."""
    pixels = torch.round(image.detach().float().cpu() * PIXEL_STEPS).to(torch.int32)  # (3, H, W)
    key = hashlib.sha256(f"{model} {schedule} steps={num_steps} iters={fixed_point_iters} "
                         f"shape={tuple(image.shape)}".encode())
    key.update(pixels.numpy().tobytes())
    return key.hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def _shipped_model(path: Path = SHIPPED_INVERSIONS) -> str | None:
    """The fingerprint of the toy DDPM the shipped inversions were made with (None when the file is missing)."""
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        return f.metadata().get("toy_ddpm")


@functools.lru_cache(maxsize=1)
def _shipped_inversions(path: Path = SHIPPED_INVERSIONS) -> dict[str, torch.Tensor]:
    """Every shipped x_T by its face key (empty when the file is missing)."""
    return load_file(str(path)) if path.is_file() else {}


def shipped_inversion(model: str, schedule: str, images: torch.Tensor, num_steps: int,
                      fixed_point_iters: int) -> torch.Tensor | None:
    """The shipped x_T (N, C, H, W) of these images if every one of them ships, else None (then: invert)."""
    # any other model (a real 256² one, a toy DDPM of your own) misses before a single image is hashed
    if model != _shipped_model() or images.ndim != 4:
        return None
    table = _shipped_inversions()
    keys = [face_key(model, schedule, num_steps, fixed_point_iters, image) for image in images]
    if any(key not in table for key in keys):
        return None
    return torch.stack([table[key] for key in keys])  # (N, C, H, W)


def shipped_tables_paths(p_path: Path, x_path: Path) -> tuple[Path, Path]:
    """Where the shipped copy of a cached pair of distance tables would be (it exists for the toy DDPM only)."""
    return SHIPPED_TABLES_DIR / Path(p_path).name, SHIPPED_TABLES_DIR / Path(x_path).name


def build_inversions(path: Path = SHIPPED_INVERSIONS, face_sets=FACE_SETS) -> int:
    """Invert every face of face_sets with the shipped toy DDPM and write them atomically; returns the faces.

    Faces already in the file for this model are kept as they are; faces of no set are dropped."""
    from . import toy
    from .ddim import ddim_invert, unet_noise_model
    from .inversion_cache import schedule_fingerprint, unet_fingerprint
    from .models import load_toy_ddpm

    unet, schedule = load_toy_ddpm()
    model, sched = unet_fingerprint(unet), schedule_fingerprint(schedule)
    old = _shipped_inversions(Path(path))
    table: dict[str, torch.Tensor] = {}
    for n, seed, heldout in tqdm(face_sets, desc="inverting the notebooks' faces"):
        faces, _ = toy.sample(n, seed=seed, heldout=heldout)  # (n, 3, 32, 32)
        keys = [face_key(model, sched, NUM_STEPS, FIXED_POINT_ITERS, face) for face in faces]
        new = [i for i, key in enumerate(keys) if key not in old]
        x_T = ddim_invert(unet_noise_model(unet), faces[new], schedule, NUM_STEPS, progress=False,
                          fixed_point_iters=FIXED_POINT_ITERS) if new else faces[:0]  # (len(new), 3, 32, 32)
        table.update({keys[i]: x.clone() for i, x in zip(new, x_T)})
        table.update({key: old[key] for key in keys if key in old})
    save_safetensors_atomic(table, Path(path), metadata={"toy_ddpm": model, "schedule": sched,
                                                         "num_steps": NUM_STEPS,
                                                         "fixed_point_iters": FIXED_POINT_ITERS})
    _shipped_model.cache_clear()
    _shipped_inversions.cache_clear()
    return len(table)


def build_tables(folder: Path = SHIPPED_TABLES_DIR) -> list[Path]:
    """Measure the toy world's default distance tables into folder (old ones removed); returns the two files."""
    from .world import TOY, load_world

    for old in Path(folder).glob("distance_*.tsv"):
        old.unlink()
    load_world(TOY, device="cpu").measure_tables(cache_dir=folder)  # the defaults `world.tables()` asks for
    return sorted(Path(folder).glob("distance_*.tsv"))


if __name__ == "__main__":
    print(f"{build_inversions()} faces written to {SHIPPED_INVERSIONS}")
    print("tables:", ", ".join(p.name for p in build_tables()))
    print("now run `python -m asyrp_edu.manifest`")
