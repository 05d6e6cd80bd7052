"""U-Net configurations and the models shipped inside the package (safetensors, sha256-checked)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from safetensors.torch import load_file, save_file

from .checks import check_sha256, sha256_of
from .ddim import Schedule

if TYPE_CHECKING:
    from diffusers import UNet2DModel

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"

# The configuration of google/ddpm-celebahq-256 (diffusers UNet2DModel): h = mid-block output, (B, 512, 8, 8).
CELEBA_HQ_UNET_CONFIG: dict = {
    "sample_size": 256, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "act_fn": "silu", "attention_head_dim": None, "center_input_sample": False, "downsample_padding": 0,
    "flip_sin_to_cos": False, "freq_shift": 1, "mid_block_scale_factor": 1, "norm_eps": 1e-6, "norm_num_groups": 32,
    "time_embedding_type": "positional",
}

# The CelebA-HQ model's exact block layout (six levels, attention at the fifth) at 32² with few channels: what tests
# and benchmarks save and load in place of the real weights, which cannot be downloaded here.
CELEBA_HQ_LAYOUT_SMALL: dict = {**CELEBA_HQ_UNET_CONFIG, "sample_size": 32, "layers_per_block": 1,
                                "block_out_channels": (32, 32, 32, 32, 64, 64)}

# The toy DDPM: the same blocks and embedding as the CelebA-HQ model, shrunk to 32² so that h is (B, 96, 8, 8).
TOY_UNET_CONFIG: dict = {
    **CELEBA_HQ_UNET_CONFIG,
    "sample_size": 32, "layers_per_block": 1,
    "block_out_channels": (32, 64, 96),
    "norm_num_groups": 8,  # 4 channels per group at the top level, as in the CelebA-HQ model (128 ch / 32 groups)
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
}

TOY_DDPM_FILE = "toy_ddpm.safetensors"
TOY_EVALUATOR_FILE = "toy_evaluator.safetensors"
_HOW_TO_FIX = ("reinstall the package (pip install --force-reinstall asyrp-edu) or retrain it with "
               "`asyrp-edu {command}` and pass the file with path=...")


def build_unet(config: dict | None = None) -> UNet2DModel:
    """A diffusers UNet2DModel with random weights from one of the configs above (toy by default)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**(config or TOY_UNET_CONFIG))


def atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    """Call write(temporary_path) and rename the result onto path, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # on disk before the rename, so a crash leaves the old file or the new one (a writable handle: Windows
        # flushes only those)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_torch_atomic(obj, path: Path) -> None:
    """torch.save (for training states: model, optimiser, step) written atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> str:
    """Write tensors as safetensors atomically; returns the file's sha256."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=meta)
        sort_safetensors_metadata(tmp)

    return sha256_of(atomic_write(path, write))


def sort_safetensors_metadata(path: str | Path) -> None:
    """Rewrite a safetensors header with its metadata keys sorted, in place and at the same length.

    safetensors writes the metadata in hash-map order, which changes from call to call, so the same tensors and
    metadata would give files with different sha256 (and a shipped file's manifest entry would change on every
    retrain)."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")  # header length; the header is JSON padded with spaces
        header = json.loads(f.read(n))
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:  # not expected (the same JSON, reordered); leave the valid file as it is
            return
        f.seek(8)
        f.write(text + b" " * (n - len(text)))


def shipped_sha256(name: str) -> str:
    """The sha256 recorded for a shipped weights file in weights/manifest.json."""
    if not MANIFEST.is_file():
        raise FileNotFoundError(f"missing {MANIFEST}; {_HOW_TO_FIX.format(command='train-ddpm --world toy')}")
    manifest = json.loads(MANIFEST.read_text())
    if name not in manifest:
        raise KeyError(f"{name} is not listed in {MANIFEST}; shipped files are {sorted(manifest)}")
    return manifest[name]["sha256"]


def load_checked(path: Path | None, name: str, command: str,
                 needs: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file (the shipped one by default) after checking its sha256; returns (tensors, metadata).
    needs: metadata keys the caller reads; a file without them was not written by `asyrp-edu {command}`."""
    from safetensors import safe_open

    if path is None:
        path = WEIGHTS_DIR / name
        check_sha256(path, shipped_sha256(name), _HOW_TO_FIX.format(command=command))
    elif not Path(path).is_file():
        raise FileNotFoundError(f"no weights file at {path}; train one with `asyrp-edu {command}`")
    elif Path(path).resolve().parent == WEIGHTS_DIR.resolve():  # a shipped file named by its path: checked too
        manifest = json.loads(MANIFEST.read_text())
        if Path(path).name in manifest:
            check_sha256(Path(path), manifest[Path(path).name]["sha256"], _HOW_TO_FIX.format(command=command))
    from safetensors import SafetensorError

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except SafetensorError as error:  # a .pt checkpoint, a truncated download, …
        raise ValueError(f"{path} is not a safetensors file ({error}); pass the .safetensors file that "
                         f"`asyrp-edu {command}` writes") from error
    missing = [key for key in needs if key not in metadata]
    if missing:
        raise ValueError(f"{path} has no {', '.join(map(repr, missing))} in its metadata, so it was not saved by "
                         f"this package; make one with `asyrp-edu {command}`")
    return load_file(str(path)), metadata


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path | str, what: str,
                 command: str) -> None:
    """module.load_state_dict(tensors); a file of another network gets a ValueError naming the command to run."""
    try:
        module.load_state_dict(tensors)
    except RuntimeError as error:  # another kind of file: an editor given as a DDPM, a DDPM as the judge, …
        own = set(module.state_dict())
        raise ValueError(f"{source} does not hold {what} weights ({len(own - set(tensors))} of its tensors are "
                         f"missing, {len(set(tensors) - own)} are not its own); pass a file written by "
                         f"`asyrp-edu {command}`") from error


def load_toy_ddpm(path: Path | None = None, device: str | torch.device = "cpu") -> tuple[UNet2DModel, Schedule]:
    """The shipped toy DDPM (EMA weights) as (UNet2DModel in eval mode, Schedule)."""
    unet, schedule = load_shipped_unet(path, TOY_DDPM_FILE, "train-ddpm --world toy", device)
    if unet.config.in_channels != 3:  # e.g. toy_ldm.safetensors, whose U-Net denoises 4-channel latents
        raise ValueError(f"{path} holds a latent U-Net ({unet.config.in_channels} input channels), not a pixel DDPM; "
                         "use it with --world toy-ldm (ldm.load_toy_ldm), or pass a file from "
                         "`asyrp-edu train-ddpm --world toy`")
    return unet, schedule


def load_shipped_unet(path: Path | None, name: str, command: str,
                      device: str | torch.device = "cpu") -> tuple[UNet2DModel, Schedule]:
    """A U-Net saved by `train_ddpm.export_ema` (the shipped `name` by default) as (UNet2DModel in eval mode,
    Schedule), with its config and schedule read from the file's metadata."""
    tensors, metadata = load_checked(path, name, command)
    config = json.loads(metadata["unet_config"]) if "unet_config" in metadata else TOY_UNET_CONFIG
    unet = build_unet(config)
    load_weights(unet, {k: v.float() for k, v in tensors.items()}, path or name, "this U-Net's", command)
    unet.eval().requires_grad_(False).to(device)
    schedule = Schedule.linear(int(metadata.get("num_train_timesteps", 1000)),
                               float(metadata.get("beta_start", 1e-4)), float(metadata.get("beta_end", 0.02)))
    return unet, schedule
