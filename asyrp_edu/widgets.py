"""Live steering: plain render(...) functions that tests call, and thin ipywidgets layers over them.

Everything that does not depend on a slider (the inversion x_T, the editors) is computed once in a `Scene`; a slider
change re-runs only the reverse process, with fewer steps than training and Δh scaled by n_train / n_test.
"""
from __future__ import annotations

import io
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import settings, toy
from .ddim import Schedule, StepOutput
from .editing import Intervals, MixedEditor, ScaledEditor, generate_edited, step_scale
from .traced_unet import trace_for_rendering
from .inversion_cache import cached_inversion
from .train_asyrp import EditorConfig, load_editor, shared_inversion_iters

STRENGTH_RANGE = (-2.0, 2.0)
# Reverse steps per slider render: 16 keeps the median render under 0.3 s on 2 cores (benchmarks/slider_latency.py:
# 16 steps 0.16–0.22 s traced, 0.21–0.37 s eager; 20 steps 0.28–0.38 s eager) while the edit mostly holds (the
# shipped smiling editor on 32 held-out faces, Δh × 40/16: 88% smile at 16 steps, 91% at 40; reconstruction MSE
# 0.0001 at 16 steps). The preview's edit is less clean: on 64 faces it flips glasses on 38% (9% at 40 steps; README).
LIVE_STEPS = 16
MIN_SIDE, MAX_PIXELS = 16, 40_000_000  # user images: smallest side and largest pixel count accepted


@dataclass
class Scene:
    """One image ready to edit: the model, its inversion x_T and the editors, all fixed while sliders move."""

    unet: torch.nn.Module
    schedule: Schedule
    original: torch.Tensor  # (1, 3, H, W) in [-1, 1]
    x_T: torch.Tensor  # (1, C, H, W), DDIM inversion with num_steps
    editors: dict[str, tuple[torch.nn.Module, EditorConfig]]
    num_steps: int = LIVE_STEPS
    cache: dict = field(default_factory=dict)
    t_boost: int = 0  # quality boosting (η = 1) below it; 0: none, as the toy editors were measured
    seed: int = 0  # the boosting noise, the same at every render so that a slider move changes only the edit
    renderer: object = None  # what renders: the U-Net traced (traced_unet, on a CPU) or, by default, unet itself

    def delta_scale(self, edit: str) -> float:
        """Δh × n_train / n_test, because the scene samples with fewer steps than the editor was trained with."""
        return step_scale(self.editors[edit][1].num_steps, self.num_steps)


def make_scene(unet, schedule: Schedule, image: torch.Tensor | None = None, edits: tuple[str, ...] | None = None,
               num_steps: int = LIVE_STEPS, seed: int = 0, cache_dir: str | Path | None = None,
               editors: dict[str, tuple[torch.nn.Module, EditorConfig]] | None = None, t_boost: int = 0) -> Scene:
    """Invert `image` (a held-out toy face by default) once, with `editors` ({name: (f_t, config)}, e.g. from
    `World.scene_editors`) or else the shipped toy editors named in `edits`; t_boost > 0 turns on quality boosting.
    cache_dir: where the inversion is kept (default `settings.cache_dir()`)."""
    from .evaluate_edits import TOY_EDITS

    if image is None:
        image, _ = toy.sample(1, seed=seed, heldout=True, size=unet.config.sample_size)
    image = image[None] if image.dim() == 3 else image
    if editors is None:  # load_editor puts them on the U-Net's device
        editors = {name: load_editor(unet, edit=name) for name in (edits or tuple(TOY_EDITS))}
    weights = next(unet.parameters())  # the image in the U-Net's device and dtype (a photo arrives as float32)
    device = weights.device
    x_T = cached_inversion(unet, schedule, image.to(weights), num_steps, settings.cache_dir(cache_dir), progress=False,
                           fixed_point_iters=shared_inversion_iters(config for _, config in editors.values()))
    # channels-last convolutions render ~13% faster on a CPU (measured, same results). The weights keep their values;
    # only their memory layout changes, and the caller's U-Net keeps that layout. Not measured on a GPU: left alone
    if device.type == "cpu":
        unet.to(memory_format=torch.channels_last)
    # the U-Net's halves traced by TorchScript render another ~25% faster on a CPU, with the same numbers
    return Scene(unet, schedule, image, x_T, editors, num_steps, t_boost=t_boost, seed=seed,
                 renderer=trace_for_rendering(unet))


def check_value(name: str, value: float, low: float, high: float) -> float:
    """A slider value inside [low, high], or a ValueError that names the range."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:  # a 0-d tensor from a computation
        value = value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value:  # numpy scalars are Real
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside [{low}, {high}]; move the slider back into range")
    return float(value)


def check_edit(scene: Scene, edit: str) -> None:
    """Raise a KeyError listing the scene's editors when `edit` is not one of them."""
    if edit not in scene.editors:
        raise KeyError(f"no editor {edit!r} in this scene; available: {sorted(scene.editors)}")


def _generate(scene: Scene, delta_h, t_edit: int, return_trajectory: bool = False):
    """Asyrp sampling of the scene's x_T: edit down to t_edit, plain DDIM, then boosting below the scene's t_boost."""
    # a t_edit slider below t_boost edits to the end
    intervals = Intervals(t_edit, min(scene.t_boost, t_edit), scene.schedule.T)
    model = scene.renderer or scene.unet  # the traced U-Net where make_scene made one
    return generate_edited(model, scene.x_T, scene.schedule, delta_h, intervals, scene.num_steps,
                           generator=torch.Generator().manual_seed(scene.seed), return_trajectory=return_trajectory)


def render_strength(scene: Scene, edit: str, strength: float, t_edit: int | None = None) -> torch.Tensor:
    """(a) The scene's image with one editor at `strength` (−2 … 2; negative edits backwards): (3, H, W)."""
    check_edit(scene, edit)
    strength = check_value("strength", strength, *STRENGTH_RANGE)
    editor, config = scene.editors[edit]
    t_edit = config.t_edit if t_edit is None else t_edit
    scaled = ScaledEditor(editor, strength * scene.delta_scale(edit))
    return _generate(scene, scaled, t_edit)[0].clamp(-1, 1)


def render_mix(scene: Scene, coefficients: dict[str, float]) -> torch.Tensor:
    """(b) Δh = Σ c_i·Δh_i over the scene's editors (c_i in −2 … 2), each in its own interval [T, t_edit_i]:
    (3, H, W)."""
    for name, c in coefficients.items():
        check_edit(scene, name)
        check_value(f"coefficient of {name}", c, *STRENGTH_RANGE)
    editors = {name: scene.editors[name][0] for name in coefficients}
    scaled = {name: c * scene.delta_scale(name) for name, c in coefficients.items()}
    mix = MixedEditor(editors, scaled, {name: scene.editors[name][1].t_edit for name in coefficients})
    return _generate(scene, mix, mix.interval_end(scene.schedule.T))[0].clamp(-1, 1)


def render_t_edit(scene: Scene, edit: str, t_edit: int, strength: float = 1.0) -> torch.Tensor:
    """(c) The same edit with a longer (small t_edit) or shorter (large t_edit) editing interval: (3, H, W)."""
    t_edit = int(check_value("t_edit", t_edit, lowest_t_edit(scene, edit), scene.schedule.T - 1))
    return render_strength(scene, edit, strength, t_edit)


def lowest_t_edit(scene: Scene, edit: str) -> int:
    """Where the t_edit slider starts: t_boost, below which the sampler adds fresh noise (quality boosting) that
    would move with the slider (0 in the toy world), or the editor's own t_edit if that is lower."""
    check_edit(scene, edit)
    return min(scene.t_boost, scene.editors[edit][1].t_edit)


def trajectories(scene: Scene, edit: str, strength: float = 1.0) -> dict[str, list[tuple[int, StepOutput]]]:
    """The unedited and the edited reverse process, step by step (cached per edit and strength)."""
    check_edit(scene, edit)
    # everything the runs depend on besides x_T: a changed t_boost or step count must not return old runs
    key = ("trajectories", edit, check_value("strength", strength, *STRENGTH_RANGE), scene.t_boost, scene.num_steps,
           id(scene.editors[edit][0]))
    if key not in scene.cache:
        editor, config = scene.editors[edit]
        runs = {}
        for name, dh in (("unedited", None), ("edited", ScaledEditor(editor, strength * scene.delta_scale(edit)))):
            _, steps = _generate(scene, dh, config.t_edit, return_trajectory=True)
            runs[name] = [(t, out) for t, _, out in steps]
        scene.cache[key] = runs
    return scene.cache[key]


def render_scrubber(scene: Scene, edit: str, index: int, strength: float = 1.0) -> torch.Tensor:
    """(d) x_t, P_t and D_t at step `index`, unedited (top row) and edited (bottom row): (3, 2H, 3W)."""
    runs = trajectories(scene, edit, strength)
    index = int(check_value("step", index, 0, len(runs["edited"]) - 1))
    rows = []
    for name in ("unedited", "edited"):
        _, out = runs[name][index]
        # x_t is the input of the step: the previous step's output (x_T for the first step)
        x_t = scene.x_T if index == 0 else runs[name][index - 1][1].prev_sample
        d = out.D_t / out.D_t.abs().amax().clamp(min=1e-8)  # D_t is noise-like: scaled to [−1, 1] to be seen
        rows.append(torch.cat([x_t[0].clamp(-1, 1), out.P_t[0].clamp(-1, 1), d[0]], dim=2))
    return torch.cat(rows, dim=1)


def timestep_of(scene: Scene, index: int) -> int:
    """The t of scrubber step `index`."""
    return scene.schedule.timesteps(scene.num_steps)[index]


def load_user_image(data: bytes, size: int = 32) -> tuple[torch.Tensor, str]:
    """An uploaded file as a (1, 3, size, size) image in [−1, 1], centre-cropped; returns (image, note for the user)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        w, h = img.size
        # refused before decoding: a small PNG of one colour can decode to 12000×12000 (over 1 GB of memory)
        if w * h > MAX_PIXELS:
            raise ValueError(f"the image is {w}×{h} pixels (over {MAX_PIXELS // 1_000_000} megapixels); "
                             "resize it before uploading")
        img.load()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError("this file is not an image we can read; upload a PNG or JPEG photo") from err
    except Image.DecompressionBombError as err:
        raise ValueError(f"the image is too large to open safely; resize it before uploading ({err})") from err
    img = ImageOps.exif_transpose(img)  # a phone photo stored sideways, with its rotation in the EXIF tags
    w, h = img.size  # the rotation swaps them
    if min(w, h) < MIN_SIDE:
        raise ValueError(f"the image is {w}×{h} pixels; it needs at least {MIN_SIDE} pixels on each side")
    note, mode = "", img.mode
    if mode.startswith("I") or mode == "F":  # 16- or 32-bit greyscale: PIL's convert("RGB") would clip at 255
        values = np.asarray(img, dtype=np.float64)
        # full scale: 65535 for 16-bit files; for 32-bit ones, guessed from the values (1, 255 or 65535)
        top = (65535.0 if mode.startswith("I;16") else 1.0 if mode == "F" and values.max() <= 1.0
               else 65535.0 if values.max() > 255 else 255.0)
        img = Image.fromarray(np.clip(values / top * 255, 0, 255).round().astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = rgba.split()[-1]
        if alpha.getextrema()[0] < 255:  # only when some pixel is see-through
            note = "transparent parts were filled with white. "
        background = Image.new("RGB", img.size, "white")
        background.paste(rgba, mask=alpha)
        img = background
    if mode in ("1", "L", "LA", "F") or mode.startswith("I"):
        note += f"the image was greyscale ({mode}); it was converted to RGB. "
    if img.mode != "RGB":  # greyscale, palette, CMYK, YCbCr, …
        img = img.convert("RGB")
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
    x = x.permute(2, 0, 1).float().div(127.5).sub(1)[None]  # (1, 3, size, size) in [−1, 1]
    return x, note + f"centre-cropped to {side}×{side} and resized to {size}×{size}."


DISPLAY_WIDTH = 192  # pixels: the width the slider panels show their image at


def to_png(image: torch.Tensor, upscale: int | None = None) -> bytes:
    """(3, H, W) in [−1, 1] -> PNG bytes, enlarged with nearest-neighbour pixels for the widget (by default up to
    DISPLAY_WIDTH: a 32² toy face × 6, a 256² photo × 1, so no slider sends megabytes to the browser)."""
    from PIL import Image

    if upscale is None:
        upscale = max(1, DISPLAY_WIDTH // image.shape[-1])
    x = F.interpolate(image[None].float(), scale_factor=upscale, mode="nearest")[0]
    array = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).contiguous().cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
