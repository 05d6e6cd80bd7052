"""Edits measured against ground truth in the toy world: the evaluation network reads what an editor changed."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import toy
from .ddim import Schedule, ddim_generate, unet_noise_model
from .editing import Intervals, generate_edited
from .losses import text_direction

# What each toy editor should do: the prompts, the attribute it moves, and the bar it must pass.
TOY_EDITS: dict[str, dict] = {
    "smiling": {"source": "a sad cartoon face", "target": "a smiling cartoon face", "attribute": "mouth",
                "success": lambda v: v >= 0.5},
    "glasses": {"source": "a cartoon face with no glasses", "target": "a cartoon face with glasses",
                "attribute": "glasses", "success": lambda v: v >= 0.5},
    "tanned": {"source": "a cartoon face with pale skin", "target": "a cartoon face with tanned skin",
               "attribute": "skin_tone", "success": lambda v: v >= 0.7},
    "blonde": {"source": "a cartoon face with black hair", "target": "a cartoon face with blonde hair",
               "attribute": "hair_color", "success": lambda v: v >= 0.7},
    "alien": {"source": "a cartoon face with human skin", "target": "a cartoon face with green alien skin",
              "attribute": "alien", "success": None},  # unseen domain: measured by greenness, not the judge
}


def check_edit_name(name: str) -> dict:
    """The spec of a toy edit, or a KeyError listing the known ones."""
    if name not in TOY_EDITS:
        raise KeyError(f"unknown toy edit {name!r}; known edits are {sorted(TOY_EDITS)}")
    return TOY_EDITS[name]


def greenness(images: torch.Tensor) -> torch.Tensor:
    """How green the face region is (the unseen 'alien' attribute has no judge output): G − (R + B)/2, (B,)."""
    face = images[..., 10:26, 10:22]  # the centre of the face, (B, 3, 16, 12)
    r, g, b = face[:, 0].mean((1, 2)), face[:, 1].mean((1, 2)), face[:, 2].mean((1, 2))
    return g - (r + b) / 2


def background_change(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean |Δ| over the four 6×6 corners, which show background only: (B,). An edit that wrecks the image (noise
    can be green too) moves them; an edit of the face does not."""
    corners = [(slice(0, 6), slice(0, 6)), (slice(0, 6), slice(-6, None)), (slice(-6, None), slice(0, 6)),
               (slice(-6, None), slice(-6, None))]
    return torch.stack([(images[..., r, c] - reference[..., r, c]).abs().mean((1, 2, 3)) for r, c in corners]).mean(0)


def hair_change(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean |Δ| over a patch of hair above the face (rows 4-7, columns 12-19), which an alien keeps: (B,)."""
    return (images[..., 4:8, 12:20] - reference[..., 4:8, 12:20]).abs().mean((1, 2, 3))


# The unseen 'alien' edit succeeds on a face that turns green (greenness > 0.2) while its background and its hair stay
# put. Green noise moves the corners; a wash of the background colour over the whole image moves the hair by ≥ 0.2,
# a rendered alien by ≤ 0.03.
ALIEN_GREEN, ALIEN_MAX_BACKGROUND_CHANGE, ALIEN_MAX_HAIR_CHANGE = 0.2, 0.25, 0.15


def alien_success(edited: torch.Tensor, unedited: torch.Tensor) -> torch.Tensor:
    """(B,) bool: a green face on an intact image."""
    intact = (background_change(edited, unedited) < ALIEN_MAX_BACKGROUND_CHANGE) & \
        (hair_change(edited, unedited) < ALIEN_MAX_HAIR_CHANGE)
    return (greenness(edited) > ALIEN_GREEN) & intact


@dataclass
class EditReport:
    """What an editor did to n held-out images, judged by the evaluation network."""

    edit: str
    n: int
    success_rate: float  # share of edited images that reach the edit's bar
    mean_change: float  # mean change of the edited attribute
    leakage: dict[str, float]  # mean |Δ| of every other continuous attribute
    glasses_flip_rate: float | None  # None for the glasses edit itself, whose flips are its success
    s_dir: float  # mean cos(ΔI, ΔT), a similarity: higher is better
    reconstruction_mse: float  # unedited inversion + reconstruction
    symmetric_change: float | None = None  # the same editor with Δh in P_t and D_t
    edited: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (n, 3, H, W), for showing

    def as_dict(self) -> dict:
        """A JSON-ready dict (the numbers, without the edited images)."""
        return {k: v for k, v in self.__dict__.items() if k != "edited"}


@torch.no_grad()
def reconstruct(unet, schedule: Schedule, x_T: torch.Tensor, num_steps: int = 40, codec=None,
                progress: bool = False) -> torch.Tensor:
    """x_T regenerated without edits (plain DDIM, no clipping), decoded for a latent model: (B, 3, H, W)."""
    x0 = ddim_generate(unet_noise_model(unet), x_T, schedule, num_steps, clip_x0=False, progress=progress)
    return codec.decode(x0) if codec is not None else x0


@torch.no_grad()
def evaluate_editor(unet, schedule: Schedule, editor, judge, clip, edit: str, x_T: torch.Tensor,
                    originals: torch.Tensor, intervals: Intervals, num_steps: int = 40,
                    with_symmetric: bool = True, codec=None,
                    reconstruction: torch.Tensor | None = None, progress: bool = False) -> EditReport:
    """Generate with and without the editor from the same inverted x_T; judge and compare the attributes.

    codec: for a latent diffusion model (x_T are latents); results are decoded before judging.
    reconstruction: the unedited images regenerated from x_T (`reconstruct`), when several editors share one x_T.
    progress: a progress bar for each run of the reverse process."""
    spec = check_edit_name(edit)
    to_image = codec.decode if codec is not None else (lambda x: x)
    recon = reconstruct(unet, schedule, x_T, num_steps, codec, progress) if reconstruction is None else reconstruction

    def generate(delta_h, symmetric: bool = False) -> torch.Tensor:  # below t_boost, the same η = 1 noise each run
        return to_image(generate_edited(unet, x_T, schedule, delta_h, intervals, num_steps, symmetric=symmetric,
                                        progress=progress)).clamp(-1, 1)

    # the unedited result as an image: the plain reconstruction, or with the same quality boosting as the edits
    shown = recon.clamp(-1, 1) if intervals.t_boost == 0 else generate(None)
    edited = generate(editor)
    before, after = judge(shown), judge(edited)
    name = spec["attribute"]
    if name == "alien":
        change = greenness(edited) - greenness(shown)
        success = float(alien_success(edited, shown).float().mean())
    else:
        change = after[name] - before[name]
        success = float(spec["success"](after[name]).float().mean())
    leakage = {k: float((after[k] - before[k]).abs().mean()) for k in toy.CONTINUOUS_ATTRIBUTES if k != name}
    delta_T, _ = text_direction(clip.encode_text, spec["source"], spec["target"])
    delta_I = F.normalize(clip.encode_image(edited), dim=-1) - F.normalize(clip.encode_image(shown), dim=-1)
    s_dir = float(F.cosine_similarity(delta_I, delta_T.expand_as(delta_I), dim=-1).mean())
    report = EditReport(edit, len(x_T), success, float(change.mean()), leakage,
                        float((after["glasses"] != before["glasses"]).float().mean()) if name != "glasses" else None,
                        s_dir, float((recon - originals).pow(2).mean()), edited=edited)
    if with_symmetric:
        sym = generate(editor, symmetric=True)
        report.symmetric_change = float((judge(sym)[name] - before[name]).mean()) if name != "alien" else \
            float((greenness(sym) - greenness(shown)).mean())
    return report
