"""Input validation with errors that say how to fix the input."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch


def check_images(x: torch.Tensor, size: int | None = None, channels: int = 3, name: str = "images",
                 check_range: bool = True) -> torch.Tensor:
    """Check a batch of images is float (B, C, H, W) in [-1, 1] (latents: any finite range); return it unchanged."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {channels}, H, W), got {type(x).__name__}; "
                        "convert with torch.as_tensor(...) first")
    if x.ndim == 3:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: a single image; add a batch axis with x[None] "
                         f"to get (1, {channels}, H, W)")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(x.shape)}; "
                         "channels-last arrays need x.permute(0, 3, 1, 2)")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{name} are {x.shape[-2]}×{x.shape[-1]} but the model expects {size}×{size}; "
                         f"resize them (e.g. torch.nn.functional.interpolate(x, size={size}))")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} have dtype {x.dtype}; convert to float in [-1, 1] with x.float() / 127.5 - 1")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch, shape {tuple(x.shape)}; pass at least one image")
    lo, hi = float(x.min()), float(x.max())
    if not (torch.isfinite(x).all()):
        raise ValueError(f"{name} contain NaN or inf values; look at how they were made (a division by zero while "
                         "normalising?) or replace them with torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)")
    if check_range and (lo < -1.001 or hi > 1.001):
        # 0 … 255 pixels, 0 … 1 pixels, else a range of its own: map [lo, hi] onto [-1, 1]
        hint = ("x / 127.5 - 1" if lo >= 0 and 2 < hi <= 255 else
                f"(x - lo) / (hi - lo) * 2 - 1 where lo, hi = {lo:.3g}, {hi:.3g} (or x.clamp(-1, 1) if only a few "
                "values stray)" if hi > lo else
                f"x.clamp(-1, 1) or by hand: every value is {lo:.3g}, so the range says nothing about the scale")
        raise ValueError(f"{name} range over [{lo:.3g}, {hi:.3g}] but must lie in [-1, 1]; rescale with {hint}")
    return x


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str, how_to_fix: str) -> None:
    """Raise if the file is missing or its sha256 differs from `expected`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing weights file {path}; {how_to_fix}")
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(f"sha256 of {path} is {actual[:16]}… but {expected[:16]}… was expected: the file is "
                         f"corrupt or was replaced; {how_to_fix}")


def check_output_path(path: str | Path, example: str = "out.safetensors", folder: bool = False) -> None:
    """Refuse, before any work, an output path that could never be written (the save would fail only at the end):
    a folder where a file goes (example: a file name to suggest), or a path below a file. folder: the path is a
    folder to write into."""
    path = Path(path)
    if not folder and path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name, e.g. {path / example}")
    for above in ([path] if folder else []) + list(path.parents):
        if above.exists():
            if not above.is_dir():
                raise ValueError(f"{path}: {above} is a file, not a folder; choose another path")
            return


def load_training_state(state_path: Path, keys: tuple[str, ...], map_location="cpu") -> dict:
    """A trainer's saved state (torch.load, weights_only=True) with these keys, or a ValueError naming the fix."""
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated (EOFError, RuntimeError), another format (UnpicklingError), …
        raise ValueError(f"{state_path} is not a readable training state ({type(error).__name__}: {error}); "
                         "delete it, or start over with resume=False (`--no-resume`)") from error
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{state_path} is not a training state of this trainer (missing {missing}); train into "
                         "another folder, or start over with resume=False (`--no-resume`)")
    return state


def check_resumable(saved: dict | None, current: dict, state_path: Path, fixed: tuple[str, ...] | None = None) -> None:
    """Refuse to resume a run whose `fixed` settings differ (None: every setting it recorded); announce the others.

    The f_t trainer fixes everything. The DDPM and autoencoder trainers fix only the network: training on with
    another learning rate or loss weight is a choice there (the shipped DDPM was made that way: README, "Retraining
    the shipped toy models"). A state saved without settings (an older version) is trusted."""
    if saved is None:
        return
    current = json.loads(json.dumps(current))  # tuples become lists, as in the saved copy
    # only what the state recorded: a setting added by a later version of the package does not block a resume
    changed = {k: (saved[k], current.get(k)) for k in saved if saved[k] != current.get(k)}
    refused = {k: v for k, v in changed.items() if fixed is None or k in fixed}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ValueError(f"{state_path} belongs to a run with other settings ({listed}). Train into another folder, "
                         "or start over with resume=False (`--no-resume`)")
    if changed:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        warnings.warn(f"resuming {state_path} with changed settings: {listed} (its weights and optimiser state go "
                      "on from where they stopped)", stacklevel=3)
