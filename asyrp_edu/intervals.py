"""Editing and boosting intervals: t_edit from LPIPS editing strength, t_boost from quality deficiency.

Kwon et al. 2023, sec. 4: edit only in [T, t_edit], where t_edit is the smallest t with
LPIPS(x0, P_t) ≥ 0.33 · cos(E_T(source), E_T(target)) (a bigger semantic change needs a longer interval), and add
stochastic noise (η = 1, "quality boosting") for t < t_boost, the smallest t with LPIPS(x0, x_t) ≥ 1.2.
Tables map t to a mean distance; the authors' CelebA-HQ/AFHQ/LSUN tables ship in asyrp_edu/reference.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .ddim import Schedule, ddim_inversion_step, predict_x0, q_sample, unet_noise_model
from .inversion_cache import schedule_fingerprint
from .models import atomic_write
from .shipped_cache import shipped_tables_paths

EDIT_STRENGTH_FACTOR = 0.33  # LPIPS(x0, P_t) ≥ 0.33 · cos(text) picks t_edit
BOOST_THRESHOLD = 1.2  # LPIPS(x0, x_t) ≥ 1.2 picks t_boost
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"  # the authors' tables (MIT), shipped with the package
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # two (B, C, H, W) image batches -> (B,)
# Where the tables take x_t from: "noised", fresh noise for every t (q_sample), or "inversion", the deterministic
# DDIM inversion of each image on the grid stride, 2·stride, … (the authors' code measures this way)
ALONG = ("noised", "inversion")


@dataclass
class DistanceTable:
    """Mean perceptual distance per timestep t (ascending t)."""

    t: list[int]
    distance: list[float]

    @classmethod
    def read(cls, path: Path) -> "DistanceTable":
        """Read a two-column TSV (t, distance), the authors' format."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no distance table at {path}; compute one with `compute_tables(...)` or pass "
                                    "one of the authors' files (asyrp_edu/reference/*.tsv)")
        try:
            text = path.read_text()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not a text file; expected a two-column TSV (t, distance)") from error
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                rows.append((int(float(parts[0])), float(parts[1])))
            except (ValueError, OverflowError):  # not a number, or a t of inf
                raise ValueError(f"{path}:{n}: expected two tab-separated numbers (t, distance), got {line!r}") from None
        if not rows:
            raise ValueError(f"{path} holds no rows; expected a two-column TSV (t, distance)")
        rows.sort()
        return cls([r[0] for r in rows], [r[1] for r in rows])

    def write(self, path: Path) -> None:
        """Write as TSV atomically (temporary file + rename)."""
        text = "".join(f"{t}\t{d}\n" for t, d in zip(self.t, self.distance))
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    def first_t_reaching(self, threshold: float) -> int:
        """The smallest t whose distance is ≥ threshold (the last t if none reaches it)."""
        for t, d in zip(self.t, self.distance):
            if d >= threshold:
                return t
        return self.t[-1]


def reference_table(dataset: str = "celeba", kind: str = "x0_t") -> DistanceTable:
    """One of the authors' tables: kind 'x0_t' is LPIPS(x0, P_t), kind 'x' is LPIPS(x0, x_t)."""
    return DistanceTable.read(REFERENCE_DIR / f"{dataset}_LPIPS_distance_{kind}.tsv")


def t_edit_from_table(table: DistanceTable, text_cosine: float, factor: float = EDIT_STRENGTH_FACTOR) -> int:
    """t_edit: the smallest t with LPIPS(x0, P_t) ≥ factor · cos(E_T(source), E_T(target))."""
    if not 0 < text_cosine <= 1:
        raise ValueError(f"text cosine {text_cosine} must lie in (0, 1]; it is cos(E_T(source), E_T(target))")
    return table.first_t_reaching(factor * text_cosine)


def t_boost_from_table(table: DistanceTable, threshold: float = BOOST_THRESHOLD) -> int:
    """t_boost: the smallest t with LPIPS(x0, x_t) ≥ threshold (quality deficiency)."""
    return table.first_t_reaching(threshold)


def check_intervals(t_edit: int, t_boost: int, T: int = 1000) -> None:
    """Raise if t_edit or t_boost leave [0, T] or t_boost comes before t_edit (it must be ≤ t_edit)."""
    for name, value in (("t_edit", t_edit), ("t_boost", t_boost)):
        if not 0 <= value <= T:
            raise ValueError(f"{name}={value} is outside [0, {T}]")
    if t_boost > t_edit:
        raise ValueError(f"t_boost={t_boost} > t_edit={t_edit}: boosting must start after editing ends "
                         "(sampling runs from T down to 0, so choose t_boost ≤ t_edit)")


def toy_perceptual_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The toy world's stand-in for LPIPS: image-gradient and colour differences on a 3-level pyramid.

    LPIPS needs a pretrained AlexNet, which cannot be loaded offline. Edges (where shapes such as the mouth or
    glasses are) and local colour carry the toy faces' meaning, so we compare those at 32², 16² and 8².
    Raw values are on their own scale; `toy_tables` multiplies them by TOY_DISTANCE_SCALE (see `calibration_scale`)
    so that the paper's thresholds (0.33·cos, 1.2) can be used unchanged.
    """
    total = torch.zeros(a.shape[0], device=a.device)
    for level in range(3):
        if level:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        da = (a[..., 1:, :] - a[..., :-1, :], a[..., :, 1:] - a[..., :, :-1])
        db = (b[..., 1:, :] - b[..., :-1, :], b[..., :, 1:] - b[..., :, :-1])
        edges = sum((x - y).abs().mean(dim=(1, 2, 3)) for x, y in zip(da, db))
        total = total + edges + (a - b).abs().mean(dim=(1, 2, 3))
    return total / 3


def check_stride(stride: int, schedule: Schedule) -> None:
    """Raise a ValueError naming the valid range unless a table can be measured every stride-th t."""
    if not 1 <= stride < schedule.T:
        raise ValueError(f"stride={stride} must lie in [1, {schedule.T - 1}] (10 matches the authors' tables)")


def check_along(along: str) -> None:
    """Raise a ValueError naming the choices unless `along` is one of ALONG."""
    if along not in ALONG:
        raise ValueError(f"along must be one of {', '.join(map(repr, ALONG))}, got {along!r}")


@torch.no_grad()
def compute_tables(eps_model: Callable, images: torch.Tensor, schedule: Schedule,
                   distance: Distance = toy_perceptual_distance, stride: int = 10, seed: int = 0,
                   progress: bool = True, along: str = "noised") -> tuple[DistanceTable, DistanceTable]:
    """Mean distance(x0, P_t) and distance(x0, x_t) over images for every multiple of stride below T, with x_t
    noised afresh or along the DDIM inversion (`ALONG`); P_t is clamped to [−1, 1] in both."""
    check_stride(stride, schedule)
    check_along(along)
    if images.shape[0] < 1:
        raise ValueError("the distance tables need at least one image (n ≥ 1)")
    g = torch.Generator().manual_seed(seed)
    ts = list(range(stride, schedule.T, stride))
    d_p, d_x = [], []
    x_s, s, eps_s = images, -1, None  # along="inversion": the inverted image at the previous t (x0 at s = −1)
    if along == "inversion":  # ε_θ(x0, 0): the first inversion step's noise, as in `ddim_invert`
        eps_s = eps_model(images, torch.zeros(images.shape[0], dtype=torch.long, device=images.device))
    for t in tqdm(ts, desc="distance tables", disable=not progress):
        tt = torch.full((images.shape[0],), t, dtype=torch.long, device=images.device)
        if along == "noised":
            # x_t = sqrt(alpha_bar_t) · x0 + sqrt(1 − alpha_bar_t) · ε,  ε ~ N(0, I)      (B, C, H, W)
            x_t = q_sample(images, tt, torch.randn(images.shape, generator=g).to(images.device), schedule)
            eps_t = eps_model(x_t, tt)
        else:
            # x_t = sqrt(alpha_bar_t) · P_s(ε_θ(x_s, s)) + sqrt(1 − alpha_bar_t) · ε_θ(x_s, s)
            x_t = ddim_inversion_step(x_s, eps_s, s, t, schedule)
            eps_t = eps_model(x_t, tt)  # P_t's noise, and the next inversion step's
            x_s, s, eps_s = x_t, t, eps_t
        P_t = predict_x0(x_t, eps_t, schedule.at(t))
        d_p.append(float(distance(images, P_t.clamp(-1, 1)).mean()))
        d_x.append(float(distance(images, x_t).mean()))
    return DistanceTable(ts, d_p), DistanceTable(ts, d_x)


def _table_paths(cache_dir: str | Path, model_key: str, schedule: Schedule, distance_name: str, stride: int,
                 seed: int, images: torch.Tensor | None, images_key: str | None,
                 along: str = "noised") -> tuple[Path, Path]:
    """Where `cached_tables` keeps one measurement: (P_t table, x_t table), named by a hash of everything it used."""
    # the schedule too: the same U-Net under another alpha_bar noises x_0 differently, and so measures other tables
    key = hashlib.sha256(f"{model_key}|schedule={schedule_fingerprint(schedule)}|{distance_name}|stride={stride}|"
                         f"seed={seed}|along={along}".encode())
    key.update(images_key.encode() if images_key is not None else images.detach().float().cpu().numpy().tobytes())
    stem = f"distance_{key.hexdigest()[:20]}"
    return Path(cache_dir) / f"{stem}_x0_t.tsv", Path(cache_dir) / f"{stem}_x.tsv"


def read_cached_tables(cache_dir: str | Path, model_key: str, schedule: Schedule, distance_name: str,
                       images_key: str, stride: int = 10, seed: int = 0,
                       along: str = "noised") -> tuple[DistanceTable, DistanceTable] | None:
    """The tables `cached_tables` measured before with these settings, or None: looks, never measures."""
    return _read_pair(*_table_paths(cache_dir, model_key, schedule, distance_name, stride, seed, None, images_key,
                                    along))


def _read_pair(p_path: Path, x_path: Path) -> tuple[DistanceTable, DistanceTable] | None:
    """Both tables of one measurement, or None unless both files are there and whole (a damaged pair is measured
    again, with a warning)."""
    if not (p_path.is_file() and x_path.is_file()):
        return None
    try:
        tables = DistanceTable.read(p_path), DistanceTable.read(x_path)
    except ValueError as error:
        warnings.warn(f"a cached distance table is damaged ({error}); it is not used", stacklevel=3)
        return None
    whole = tables[0].t == tables[1].t and all(math.isfinite(d) for table in tables for d in table.distance)
    if not whole:
        warnings.warn(f"the cached distance tables {p_path.name} and {x_path.name} are not a whole pair (other t or "
                      "a non-finite distance); they are not used", stacklevel=3)
        return None
    return tables


def cached_tables(eps_model: Callable, images: torch.Tensor | Callable[[], torch.Tensor], schedule: Schedule,
                  cache_dir: str | Path, model_key: str, distance: Distance = toy_perceptual_distance,
                  distance_name: str = "toy", stride: int = 10, seed: int = 0, progress: bool = True,
                  images_key: str | None = None, along: str = "noised") -> tuple[DistanceTable, DistanceTable]:
    """`compute_tables`, read back from cache_dir when the same model, schedule, images, distance, stride, seed and
    way (along) were measured before. model_key names the model (e.g. `unet_fingerprint`; the schedule is added to
    the key here); the two tables are TSVs in the authors' format, each written atomically, and only a pair of both
    counts as cached.

    images_key: names the images instead of their bytes; images may then be a function, called only when measuring
    (a real model's own samples take minutes to draw)."""
    if images_key is None and callable(images):
        raise ValueError("images given as a function need an images_key that names them (e.g. 'samples n=16 seed=0')")
    p_path, x_path = _table_paths(cache_dir, model_key, schedule, distance_name, stride, seed,
                                  None if images_key is not None else images, images_key, along)
    cached = _read_pair(p_path, x_path)
    if cached is not None:
        return cached
    shipped = _read_pair(*shipped_tables_paths(p_path, x_path))  # the toy DDPM's default tables ship measured
    if shipped is not None:
        return shipped
    check_stride(stride, schedule)  # before images() draws samples, which takes minutes for a real model
    check_along(along)
    images = images() if callable(images) else images
    p_table, x_table = compute_tables(eps_model, images, schedule, distance, stride, seed, progress, along)
    for table, name in ((p_table, "d(x0, P_t)"), (x_table, "d(x0, x_t)")):  # never cached: it could not be read back
        bad = [t for t, d in zip(table.t, table.distance) if not math.isfinite(d)]
        if bad:
            raise FloatingPointError(f"{name} is not finite at t = {bad[:5]}; check the model and the distance "
                                     f"({distance_name}) on these images")
    p_table.write(p_path)
    x_table.write(x_path)
    return p_table, x_table


# toy_perceptual_distance × this ≈ LPIPS: fitted by `calibration_scale` on the shipped toy DDPM (tests re-fit it)
TOY_DISTANCE_SCALE = 1.10


def calibration_scale(toy_table: DistanceTable, reference: DistanceTable, t_max: int = 800) -> float:
    """The factor c minimising Σ_t (c·toy(t) − LPIPS_ref(t))² over the t both tables share (t ≤ t_max).

    Both DDPMs use the same linear β schedule, so P_t loses detail at the same pace in t; matching the toy curve to the
    authors' CelebA-HQ LPIPS(x0, P_t) curve puts the toy distance on LPIPS's scale, where 0.33·cos is meaningful.
    """
    ref = dict(zip(reference.t, reference.distance))
    pairs = [(d, ref[t]) for t, d in zip(toy_table.t, toy_table.distance) if t in ref and t <= t_max]
    if len(pairs) < 3:
        raise ValueError(f"the tables share only {len(pairs)} timesteps; compute the toy table with stride=10")
    # c = Σ toy·ref / Σ toy²   (least squares through the origin)
    return sum(a * b for a, b in pairs) / sum(a * a for a, _ in pairs)


def toy_tables(unet, schedule: Schedule, n: int = 32, stride: int = 10, seed: int = 0, scale: float | None = None,
               progress: bool = True, cache_dir: str | Path | None = None,
               along: str = "noised") -> tuple[DistanceTable, DistanceTable]:
    """The toy model's (P_t, x_t) distance tables on n held-out faces, on LPIPS's scale (× TOY_DISTANCE_SCALE).

    cache_dir: keep them there (`cached_tables`, keyed by the weights, the schedule and every setting), and read
    them back next time."""
    from . import toy
    from .inversion_cache import unet_fingerprint

    images, _ = toy.sample(n, seed=seed, heldout=True, size=unet.config.sample_size)
    images = images.to(next(unet.parameters()).device)
    c = TOY_DISTANCE_SCALE if scale is None else scale

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return c * toy_perceptual_distance(a, b)

    if cache_dir is None:  # compute_tables runs without gradients
        return compute_tables(unet_noise_model(unet), images, schedule, distance, stride, seed, progress, along)
    return cached_tables(unet_noise_model(unet), images, schedule, cache_dir, unet_fingerprint(unet), distance,
                         f"toy_perceptual_distance*{c!r}", stride, seed, progress, along=along)
