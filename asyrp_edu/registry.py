"""Real-world models by short name: pretrained DDPMs (diffusers), the authors' editors; offline, fail fast and clearly.

Nothing here downloads on import. `load_ddpm("celeba_hq")` reads the Hugging Face cache, downloads when the hub is
reachable, and otherwise raises `WeightsUnavailable` within seconds with the three ways to get the weights.
"""
from __future__ import annotations

import json
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import settings
from .ddim import Schedule
from .intervals import REFERENCE_DIR

if TYPE_CHECKING:
    from diffusers import UNet2DModel
    from lpips import LPIPS

    from .delta_block import DeltaBlock
    from .ldm import LatentDDPM
    from .tiny_clip import TinyClip

HUB_HOST = "huggingface.co"
OFFICIAL_EDITORS_RAW = "https://github.com/kwonminki/Asyrp_official/raw/main/checkpoint/"


@dataclass(frozen=True)
class PretrainedDDPM:
    """A diffusers DDPM on the hub: repository, revision, and the authors' LPIPS table for its domain (if any)."""

    repo_id: str
    revision: str
    lpips_dataset: str | None
    editor_suffix: str | None  # how the authors' editor files for this domain end
    latent_scale: float | None = None  # an LDM's z = latent_scale · E(x); None: its VQModel's scaling_factor


# Revisions: "main" until a person with hub access records the commit ids (pass revision=... to pin one yourself).
DDPMS: dict[str, PretrainedDDPM] = {
    "celeba_hq": PretrainedDDPM("google/ddpm-celebahq-256", "main", "celeba", "_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth"),
    "church": PretrainedDDPM("google/ddpm-ema-church-256", "main", "church",
                             "_LC_church_outdoor_t999_ninv40_ngen40_0.pth"),
    "bedroom": PretrainedDDPM("google/ddpm-ema-bedroom-256", "main", "bedroom", "_LC_bedroom_t999_ninv40_ngen40_0.pth"),
    "cat": PretrainedDDPM("google/ddpm-ema-cat-256", "main", None, None),
}
# Latent diffusion models (diffusers LDMPipeline layout: unet/, vqvae/, scheduler/).
LDMS: dict[str, PretrainedDDPM] = {
    # CompVis trained this U-Net on unscaled VQ latents (their config sets no scale_factor, so 1.0). The hub's vqvae
    # config predates `scaling_factor`, so VQModel falls back to 0.18215, and diffusers' LDMPipeline, which divides
    # by it, decodes latents 5.5× too large (diffusers issue #6725).
    "ldm_celebahq": PretrainedDDPM("CompVis/ldm-celebahq-256", "main", "celeba", None, latent_scale=1.0),
}
CLIPS: dict[str, tuple[str, str]] = {"ViT-B-32": ("ViT-B-32", "openai"), "ViT-B-16": ("ViT-B-16", "openai")}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor reachable."""


# Option 2 of `how_to_get` for a model from the Hugging Face hub
HUB_FOLDER = ("download the files elsewhere and pass the local folder instead of the short name (for a world,\n"
              "     load_world(folder, model=SHORT_NAME) keeps the authors' editors and tables; for the CompVis LDM,\n"
              "     load_ldm(folder, latent_scale=1.0))")


def how_to_get(what: str, by_hand: str = HUB_FOLDER, mirror: str = " (where the hub is blocked, set\n"
               "     HF_ENDPOINT to a mirror)") -> str:
    """The three ways to get real weights, for error messages; by_hand: how to use files downloaded elsewhere."""
    return (f"{what} is not in the local cache and the download site cannot be reached from here. Either\n"
            f"  1. run on Colab (or any machine online) once, so the cache fills{mirror}, or\n"
            f"  2. {by_hand}, or\n"
            f"  3. use the toy world (WORLD = 'toy'), which ships with the package and needs no download.")


def hub_reachable(host: str | None = None, timeout: float = 3.0) -> bool:
    """True when a TCP connection to host opens within timeout seconds (and HF_HUB_OFFLINE is not set); host None
    is the Hugging Face hub, or the mirror that HF_ENDPOINT names (e.g. https://hf-mirror.com)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    port = 443
    if host is None:
        from urllib.parse import urlsplit

        endpoint = os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}"
        endpoint = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")  # "hf-mirror.com" works too
        host = endpoint.hostname or HUB_HOST
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(repo_id: str, revision: str, filename: str = "config.json") -> bool:
    """Whether one file of a hub repository is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return isinstance(found, str)


def _model_cached(repo_id: str, revision: str, subfolders: tuple[str, ...] = ("",),
                  files: tuple[str, ...] = ()) -> bool:
    """Whether each diffusers model folder of a repository has its config and its weights in the cache, and so has
    each of `files` (e.g. the scheduler's config): a download cut short leaves some of them out, and from_pretrained
    would then fail with a bare OSError."""
    weights = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    return all(_cached(repo_id, revision, f"{sub}config.json") and
               any(_cached(repo_id, revision, f"{sub}{w}") for w in weights) for sub in subfolders) and \
        all(_cached(repo_id, revision, f) for f in files)


def _unet_folder(folder: Path) -> tuple[Path, str | None]:
    """(folder, subfolder) of the UNet2DModel's config.json: pipelines keep it in unet/, single models at the root."""
    if (folder / "unet" / "config.json").is_file():
        return folder, "unet"
    if (folder / "config.json").is_file():
        return folder, None
    raise FileNotFoundError(f"{folder} holds no config.json (nor unet/config.json); save a model there with "
                            "UNet2DModel.save_pretrained(folder) or download one of the registry's models")


def load_ddpm(name_or_folder: str | Path, device: str | torch.device = "cpu",
              revision: str | None = None) -> tuple[UNet2DModel, Schedule]:
    """A pretrained DDPM as (UNet2DModel in eval mode, Schedule): a short name (see DDPMS) or a local folder."""
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(name_or_folder)
    if path.is_dir():
        if (path / "vqvae").is_dir() or (path / "vae").is_dir():  # its U-Net denoises latents, not pixels
            raise ValueError(f"{path} holds a latent diffusion model (an autoencoder next to its U-Net); load it with "
                             "registry.load_ldm(folder), as notebook 07 does, not as a pixel DDPM")
        folder, sub = _unet_folder(path)
        unet = UNet2DModel.from_pretrained(folder, subfolder=sub)
        scheduler_dir = next((d for d in (path / "scheduler", path) if (d / "scheduler_config.json").is_file()), None)
        schedule = (Schedule.from_diffusers(DDPMScheduler.from_pretrained(scheduler_dir)) if scheduler_dir
                    else Schedule.linear())
    else:
        if str(name_or_folder) not in DDPMS:
            raise KeyError(f"unknown model {name_or_folder!r}: use one of {sorted(DDPMS)}, a local folder, or 'toy'")
        entry = DDPMS[str(name_or_folder)]
        revision = revision or entry.revision
        if not _model_cached(entry.repo_id, revision, files=("scheduler_config.json",)) and not hub_reachable():
            raise WeightsUnavailable(how_to_get(f"{entry.repo_id} (revision {revision})"))
        offline = {} if hub_reachable(timeout=1.0) else {"local_files_only": True}
        unet = UNet2DModel.from_pretrained(entry.repo_id, revision=revision, **offline)
        schedule = Schedule.from_diffusers(DDPMScheduler.from_pretrained(entry.repo_id, revision=revision, **offline))
    return unet.eval().requires_grad_(False).to(device), schedule


def load_ldm(name_or_folder: str | Path, device: str | torch.device = "cpu",
             revision: str | None = None, latent_scale: float | None = None) -> LatentDDPM:
    """A pretrained latent diffusion model as `ldm.LatentDDPM` (U-Net on z, schedule, VQ-VAE codec): a short name
    (see LDMS) or a local folder laid out as diffusers' LDMPipeline (unet/, vqvae/, scheduler/).

    latent_scale: z = latent_scale · E(x). By default the named model's own (1.0 for CompVis/ldm-celebahq-256), or
    for a folder its vqvae's `scaling_factor`, as LDMPipeline reads it, and 1.0 when its config.json has none (the
    hub files of the CompVis model); pass 1.0 for a copy of the CompVis model saved by diffusers."""
    from diffusers import DDIMScheduler, UNet2DModel, VQModel

    from .autoencoder import LatentCodec
    from .ldm import LatentDDPM

    path, entry = Path(name_or_folder), None
    if path.is_dir():
        missing = [d for d in ("unet", "vqvae", "scheduler") if not (path / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path} lacks {missing}; an LDM folder holds unet/, vqvae/ and scheduler/ "
                                    "(LDMPipeline.save_pretrained(folder) writes them)")
        source, options = str(path), {}
    else:
        if str(name_or_folder) not in LDMS:
            raise KeyError(f"unknown latent model {name_or_folder!r}: use one of {sorted(LDMS)}, a local folder, "
                           "or 'toy-ldm'")
        entry = LDMS[str(name_or_folder)]
        revision = revision or entry.revision
        if not _model_cached(entry.repo_id, revision, ("unet/", "vqvae/"), ("scheduler/scheduler_config.json",)) \
                and not hub_reachable():
            raise WeightsUnavailable(how_to_get(f"{entry.repo_id} (revision {revision})"))
        source = entry.repo_id
        options = {"revision": revision, **({} if hub_reachable(timeout=1.0) else {"local_files_only": True})}
    unet = UNet2DModel.from_pretrained(source, subfolder="unet", **options)
    vqvae = VQModel.from_pretrained(source, subfolder="vqvae", **options)
    schedule = Schedule.from_diffusers(DDIMScheduler.from_pretrained(source, subfolder="scheduler", **options))
    if latent_scale is None and entry is None and "scaling_factor" not in _raw_config(path / "vqvae"):
        # a copy of hub files written before `scaling_factor` existed (CompVis/ldm-celebahq-256's are): those models
        # used unscaled latents, where VQModel would fill in 0.18215
        latent_scale = 1.0
    if latent_scale is None:
        latent_scale = entry.latent_scale if entry is not None and entry.latent_scale is not None else \
            vqvae.config.scaling_factor
    if not latent_scale > 0:
        raise ValueError(f"latent_scale={latent_scale} must be > 0 (1.0 for CompVis/ldm-celebahq-256)")
    # the U-Net's latent is z = latent_scale · E(x), decoded as D(z / latent_scale)
    codec = LatentCodec(vqvae, scale=float(latent_scale), shift=0.0)
    return LatentDDPM(unet.eval().requires_grad_(False).to(device), schedule,
                      codec.eval().requires_grad_(False).to(device))


def _raw_config(folder: Path) -> dict:
    """A diffusers model folder's config.json as written, without the defaults that from_pretrained fills in."""
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def official_editor_sums() -> dict[str, str]:
    """{file name: sha256} of the authors' released editors."""
    lines = (REFERENCE_DIR / "official_editors_SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def official_editor_file(edit: str, model: str = "celeba_hq") -> str:
    """The authors' file name for an edit ('smiling', 'pixar', …) of a registry model."""
    suffix = DDPMS[model].editor_suffix if model in DDPMS else None
    if suffix is None:
        raise KeyError(f"the authors released no editors for {model!r}; models with editors: "
                       f"{sorted(k for k, v in DDPMS.items() if v.editor_suffix)}")
    prefix = {"church": "church_", "bedroom": "bedroom_"}.get(model, "")
    name = f"{prefix}{edit}{suffix}"
    sums = official_editor_sums()
    if name not in sums:
        known = sorted(n[len(prefix):-len(suffix)] for n in sums if n.endswith(suffix) and n.startswith(prefix))
        raise KeyError(f"no released {model} editor named {edit!r}; the authors released: {known}")
    return name


def official_editor(edit: str, model: str = "celeba_hq", base_url: str = OFFICIAL_EDITORS_RAW,
                    cache_dir: Path | None = None, timeout: float = 5.0) -> DeltaBlock:
    """One of the authors' f_t editors as a DeltaBlock: downloaded once, cached, sha256-checked before loading."""
    from .checks import sha256_of
    from .delta_block import load_official_delta_block
    from .models import atomic_write

    name = official_editor_file(edit, model)
    expected = official_editor_sums()[name]
    path = (Path(cache_dir) if cache_dir is not None else settings.cache_dir() / "editors") / name
    if not path.is_file() or sha256_of(path) != expected:
        def fetch(tmp: str) -> None:
            try:
                with urllib.request.urlopen(base_url + name, timeout=timeout) as response, open(tmp, "wb") as out:
                    out.write(response.read())
            except OSError as error:
                raise WeightsUnavailable(how_to_get(
                    f"the authors' editor {name}", f"download {base_url + name} elsewhere and put it at {path}",
                    "")) from error
            if sha256_of(Path(tmp)) != expected:
                raise ValueError(f"{name} downloaded from {base_url} has the wrong sha256; delete {path} and retry, "
                                 f"or download it by hand and put it there")
        atomic_write(path, fetch)
    return load_official_delta_block(path)


def load_clip(name: str = "ViT-B-32", device: str | torch.device = "cpu",
              pretrained: str | None = None) -> TinyClip:
    """OpenAI CLIP through open_clip as a `TinyClip`-style encoder (resizes [-1, 1] images to 224², normalises)."""
    import open_clip

    from .tiny_clip import TinyClip

    if name not in CLIPS:
        raise KeyError(f"unknown CLIP {name!r}; use one of {sorted(CLIPS)} (or load_tiny_clip() in the toy world)")
    arch, tag = CLIPS[name]
    reachable = hub_reachable()
    # a weights file downloaded by hand (open_clip_pytorch_model.bin of the hub's timm/vit_base_patch32_clip_224.openai)
    by_hand = pretrained is not None and Path(pretrained).is_file()
    local = (f"download open_clip's {arch} {tag} weights elsewhere and pass the file: load_clip({name!r}, "
             f"pretrained=FILE), or load_world(..., clip=load_clip(...))")
    if not reachable and not by_hand and not _clip_cached(arch, pretrained or tag):  # fail before building 150M
        raise WeightsUnavailable(how_to_get(f"CLIP {name} ({pretrained or tag} weights)", local))
    import huggingface_hub.constants as hub_settings

    previous = hub_settings.HF_HUB_OFFLINE
    if not reachable:
        # read the cache only: no retries against an unreachable hub. huggingface_hub reads $HF_HUB_OFFLINE once,
        # when it is imported (open_clip has imported it by now), so the switch is its module constant
        hub_settings.HF_HUB_OFFLINE = True
    # OpenAI's weights were trained with QuickGELU; open_clip builds "ViT-B-32" with nn.GELU unless told (it only
    # warns), which would shift every image and text feature. The weights' own entry says which they need.
    # (a file by hand holds the registry's weights, so its tag says)
    weights_tag = tag if by_hand else pretrained or tag
    quick_gelu = bool((open_clip.pretrained.get_pretrained_cfg(arch, weights_tag) or {}).get("quick_gelu"))
    try:
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained or tag, device=device,
                                                            force_quick_gelu=quick_gelu)
    except Exception as error:  # open_clip raises several types when files are missing
        if reachable:
            raise
        raise WeightsUnavailable(how_to_get(f"CLIP {name} ({pretrained or tag} weights)", local)) from error
    finally:
        hub_settings.HF_HUB_OFFLINE = previous
    return TinyClip(model, open_clip.get_tokenizer(arch)).to(device)


def _clip_cached(arch: str, tag: str) -> bool:
    """Whether open_clip's weights for (arch, tag) are in the Hugging Face cache."""
    import open_clip

    repo = (open_clip.pretrained.get_pretrained_cfg(arch, tag) or {}).get("hf_hub", "").rstrip("/")
    return bool(repo) and any(_cached(repo, "main", f) for f in ("open_clip_model.safetensors",
                                                                  "open_clip_pytorch_model.bin"))


def load_lpips(net: str = "alex", device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS(net) on [-1, 1] images; its AlexNet backbone comes from torchvision's download cache."""
    import lpips

    if not hub_reachable("download.pytorch.org"):
        _check_torchvision_cache(net)  # fail now, not after torchvision's download attempt
    return lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False).to(device)


def _check_torchvision_cache(net: str) -> None:
    """Raise WeightsUnavailable unless torchvision's pretrained backbone for `net` is already cached."""
    files = {"alex": "alexnet-owt-", "vgg": "vgg16-", "squeeze": "squeezenet1_1-"}
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(p.name.startswith(files.get(net, net)) for p in folder.glob("*.pth")):
        raise WeightsUnavailable(how_to_get(
            f"the {net} backbone of LPIPS", f"download torchvision's {files.get(net, net)}*.pth elsewhere and put "
            f"it in {folder}", ""))
