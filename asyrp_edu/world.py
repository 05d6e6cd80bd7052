"""One switch for every notebook: WORLD = "toy" (CPU, shipped models) or a real model ("celeba_hq", …, on a GPU).

A `World` bundles what the notebooks need — the frozen U-Net and its schedule, a CLIP, editors by name and the
paper's settings — so the same cells run in both worlds.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from . import settings
from .ddim import Schedule
from .intervals import DistanceTable, reference_table, t_boost_from_table, t_edit_from_table
from .settings import default_device

if TYPE_CHECKING:
    from .delta_block import DeltaBlock
    from .evaluator import Evaluator
    from .widgets import Scene

TOY = "toy"
OWN_TABLES_DISTANCE = "lpips-alex"  # the distance a real world's own tables are measured and cached with
OWN_TABLES_N, OWN_TABLES_STRIDE = 16, 10  # the defaults: images and t-stride of the tables load_world looks for
# The prompts the authors trained their CelebA-HQ editors with (their configs), for t_edit and λ_recon.
OFFICIAL_PROMPTS: dict[str, tuple[str, str]] = {
    "smiling": ("face", "smiling face"), "pixar": ("human", "3d render in the style of Pixar"),
    "neanderthal": ("human", "neanderthal"), "tanned": ("face", "tanned face"), "sad": ("face", "sad face"),
    "angry": ("face", "angry face"), "young": ("person", "young person"), "makeup": ("face", "face with makeup"),
    "gothic": ("church", "gothic church"), "princess": ("bedroom", "princess bedroom"),
}
# The edit notebook 00 shows first in each world (a model folder has no released editors)
FIRST_EDIT = {TOY: "smiling", "celeba_hq": "smiling", "church": "gothic", "bedroom": "princess"}
# The editors the steering notebooks (05, 06) offer in each world: the first two make the linearity strip, the first
# three the measured combination, the first four the combination grid.
LIVE_EDITS = {TOY: ("smiling", "glasses", "tanned", "blonde", "alien"),
              "real": ("smiling", "makeup", "tanned", "young")}  # the authors' CelebA-HQ editors


def default_world() -> str:
    """'celeba_hq' when a CUDA GPU is present, else 'toy' (Binder, laptops, CI)."""
    return "celeba_hq" if torch.cuda.is_available() else TOY


@dataclass
class World:
    """The models and settings of one world."""

    name: str
    unet: torch.nn.Module
    schedule: Schedule
    clip: object  # encode_image([-1, 1] images) / encode_text(prompts), unit-norm features
    device: torch.device
    num_steps: int = 40  # the paper's n_inv = n_gen = 40
    edit_table: DistanceTable | None = None  # LPIPS(x0, P_t) per t, for t_edit
    boost_table: DistanceTable | None = None  # LPIPS(x0, x_t) per t, for t_boost
    make_tables: Callable[[], tuple[DistanceTable, DistanceTable]] | None = None  # measures both, on first use
    # fixed-point iterations of the DDIM inversion this world's editors were trained on (`ddim_invert`): 2 for the
    # shipped toy editors, 0 (plain, as the authors invert) for the authors' released ones
    inversion_iters: int = 0

    def tables(self) -> tuple[DistanceTable, DistanceTable]:
        """(edit table, boost table), measured now if this world measures its own (the toy world: seconds)."""
        if self.edit_table is None and self.make_tables is not None:
            self.edit_table, self.boost_table = self.make_tables()
        return self.edit_table, self.boost_table

    def measure_tables(self, n: int = OWN_TABLES_N, stride: int = OWN_TABLES_STRIDE,
                       cache_dir: str | Path | None = None, progress: bool = True,
                       along: str = "noised") -> tuple[DistanceTable, DistanceTable]:
        """Measure this model's own (edit, boost) tables on n images and use them from now on (cached in cache_dir,
        by default `settings.cache_dir()`): the toy distance on held-out faces (toy world), LPIPS on the model's own
        samples (real worlds); x_t noised afresh, or along="inversion" as the authors measured (`intervals.ALONG`)."""
        cache_dir = settings.cache_dir(cache_dir)
        if n < 1:
            raise ValueError(f"n={n}: the distance tables need at least one image")
        if self.name == TOY:
            from .intervals import toy_tables

            tables = toy_tables(self.unet, self.schedule, n=n, stride=stride, progress=progress, cache_dir=cache_dir,
                                along=along)
        else:
            from .ddim import unet_noise_model
            from .intervals import cached_tables
            from .registry import load_lpips

            lpips = load_lpips("alex", self.device)  # fails fast, saying how to get its weights, when offline

            def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return lpips(a, b).flatten()  # (B, 1, 1, 1) -> (B,)

            tables = cached_tables(unet_noise_model(self.unet), lambda: self.images(n), self.schedule, cache_dir,
                                   self._fingerprint(), distance, OWN_TABLES_DISTANCE, stride, progress=progress,
                                   images_key=self._own_samples_key(n), along=along)
        self.edit_table, self.boost_table = tables
        return tables

    def cached_own_tables(self, n: int = OWN_TABLES_N, stride: int = OWN_TABLES_STRIDE,
                          cache_dir: str | Path | None = None,
                          along: str | None = None) -> tuple[DistanceTable, DistanceTable] | None:
        """A real world's own tables if `measure_tables(n, stride, cache_dir, along=along)` measured them before,
        else None; along=None takes those along the inversion (the authors' way) where both were measured."""
        from .intervals import read_cached_tables

        folder, model_key = settings.cache_dir(cache_dir), self._fingerprint()
        for way in ("inversion", "noised") if along is None else (along,):
            tables = read_cached_tables(folder, model_key, self.schedule, OWN_TABLES_DISTANCE,
                                        self._own_samples_key(n), stride, along=way)
            if tables is not None:
                return tables
        return None

    def _fingerprint(self) -> str:
        from .inversion_cache import unet_fingerprint

        return unet_fingerprint(self.unet)

    def _own_samples_key(self, n: int) -> str:
        return f"own samples n={n} seed=0 steps={self.num_steps}"  # what self.images(n) draws

    @property
    def image_size(self) -> int:
        """Side of the model's square images."""
        return int(self.unet.config.sample_size)

    def intervals_for(self, source: str, target: str) -> tuple[int, int]:
        """(t_edit, t_boost) by the paper's rules: LPIPS editing strength and quality deficiency."""
        from .losses import text_direction

        _, cosine = text_direction(self.clip.encode_text, source, target)
        edit_table, boost_table = self.tables()
        t_edit = t_edit_from_table(edit_table, max(cosine, 1e-3))
        # boosting starts where editing ends at the latest: the two rules cross for weak edits of models whose
        # x_t stays close to x0 for long (church: t_boost 293 > t_edit 223 at cos 0.5)
        return t_edit, min(t_boost_from_table(boost_table), t_edit)

    def editor(self, edit: str) -> tuple[DeltaBlock, int, int]:
        """(f_t, t_edit, t_boost) for a named edit: the shipped toy editors, or the authors' released ones."""
        if self.name == TOY:
            from .train_asyrp import load_editor

            block, config = load_editor(self.unet, edit=edit)  # on the U-Net's device, in its dtype
            return block, config.t_edit, 0
        from .registry import official_editor

        if edit not in OFFICIAL_PROMPTS:
            raise KeyError(f"no prompts recorded for the authors' {edit!r} editor; known: {sorted(OFFICIAL_PROMPTS)}")
        t_edit, t_boost = self.intervals_for(*OFFICIAL_PROMPTS[edit])
        weights = next(self.unet.parameters())  # f_t computes in the U-Net's device and dtype (float16 too)
        return official_editor(edit, self.name).to(weights.device, weights.dtype), t_edit, t_boost

    def live_edits(self) -> tuple[str, ...]:
        """The editors notebooks 05 and 06 steer with: shipped toy editors, or released ones of the authors."""
        from .registry import DDPMS

        if self.name in DDPMS and self.name != "celeba_hq":
            # LIVE_EDITS["real"] are CelebA-HQ editors; the prompts of the authors' church and bedroom editors are
            # not all recorded here (a model folder of your own gets the CelebA-HQ names, and `editor` then says
            # that no editors were released for it)
            raise ValueError(f"the steering notebooks (05, 06) use the authors' CelebA-HQ editors or the toy world's, "
                             f"not editors for {self.name!r}; set WORLD = 'celeba_hq' (a GPU) or 'toy'")
        return LIVE_EDITS[TOY if self.name == TOY else "real"]

    def scene_editors(self, edits: tuple[str, ...]) -> dict:
        """{edit: (f_t, EditorConfig)} for a live-steering Scene; real editors get the paper's t_edit and 40 steps."""
        from .train_asyrp import EditorConfig, load_editor

        if self.name == TOY:  # on the U-Net's device, in its dtype
            return {edit: load_editor(self.unet, edit=edit) for edit in edits}
        editors = {}
        for edit in edits:
            block, t_edit, _ = self.editor(edit)
            editors[edit] = (block, EditorConfig(*OFFICIAL_PROMPTS[edit], t_edit=t_edit, num_steps=self.num_steps))
        return editors

    def scene(self, edits: tuple[str, ...] | None = None, image: torch.Tensor | None = None,
              num_steps: int | None = None, seed: int = 0, cache_dir: str | Path | None = None) -> Scene:
        """One image inverted once with this world's editors, for the sliders of `asyrp_edu.sliders`
        (num_steps: the sliders' `widgets.LIVE_STEPS` unless given). The real world boosts quality below t_boost, as
        the paper does; the toy editors were trained and measured without it."""
        from .widgets import LIVE_STEPS, make_scene

        edits = edits or self.live_edits()
        if image is None and self.name != TOY:
            image = self.images(1, seed)
        t_boost = 0 if self.name == TOY else t_boost_from_table(self.tables()[1])
        return make_scene(self.unet, self.schedule, image, num_steps=num_steps or LIVE_STEPS, seed=seed,
                          cache_dir=cache_dir, editors=self.scene_editors(edits), t_boost=t_boost)

    def judge(self, edits: tuple[str, ...] | None = None) -> Evaluator | ClipJudge:
        """What reads an edit's effect: the evaluation network (toy) or CLIP along each edit's ΔT (real)."""
        if self.name == TOY:
            from .evaluator import load_evaluator

            return load_evaluator()
        return ClipJudge(self.clip, {edit: OFFICIAL_PROMPTS[edit] for edit in edits or self.live_edits()})

    def attribute(self, edit: str) -> str:
        """The key of `judge(...)`'s reading that an edit should move: a toy attribute, or the edit's own name."""
        if self.name == TOY:
            from .evaluate_edits import check_edit_name

            return check_edit_name(edit)["attribute"]
        return edit

    def images(self, n: int, seed: int = 0) -> torch.Tensor:
        """n images to edit: held-out toy faces, or DDIM samples of the real model (bring your own photo instead)."""
        if self.name == TOY:
            from . import toy

            return toy.sample(n, seed=seed, heldout=True)[0].to(self.device)
        from .quality import sample_from_noise

        return sample_from_noise(self.unet, self.schedule, n, num_steps=self.num_steps, seed=seed, batch_size=4,
                                 progress=True).to(self.device)


def load_world(name: str | None = None, device: str | torch.device | None = None, clip: object = "ViT-B-32",
               model: str | None = None) -> World:
    """The world named `name` (default: `default_world()`); a local model folder also works as a name.

    clip (real worlds): a name of `registry.CLIPS`, an encoder already loaded (e.g. `load_clip(name,
    pretrained=FILE)`), or None for none (measuring tables needs no CLIP).
    model: for a folder holding a copy of one of `registry.DDPMS` (e.g. "celeba_hq" for a download of
    google/ddpm-celebahq-256), that short name, so the authors' editors and LPIPS tables apply to it."""
    name = name or default_world()
    device = torch.device(device) if device is not None else default_device()
    if name == TOY:
        from .ddim import INVERSION_FIXED_POINT_ITERS
        from .models import load_toy_ddpm
        from .tiny_clip import load_tiny_clip

        unet, schedule = load_toy_ddpm(device=device)
        toy_world = World(TOY, unet, schedule, load_tiny_clip(device=device), device,
                          inversion_iters=INVERSION_FIXED_POINT_ITERS)
        # measured for the toy DDPM when first needed (16 faces, every 10th t; kept in settings.cache_dir()), not by the
        # notebooks that never ask
        toy_world.make_tables = lambda: toy_world.measure_tables(progress=False)
        return toy_world
    from .registry import DDPMS, load_clip, load_ddpm

    if model is not None and (model not in DDPMS or not Path(name).is_dir()):
        raise ValueError(f"model={model!r} names which of {sorted(DDPMS)} a local folder holds; give a folder as "
                         f"the name and one of those as model (got name={str(name)!r})")
    unet, schedule = load_ddpm(name, device)
    kind = name if name in DDPMS else model  # which of the authors' models this is, if any
    dataset = DDPMS[kind].lpips_dataset if kind is not None else None
    display = kind or Path(name).name
    if kind is None and display in (TOY, *DDPMS):  # a folder called "toy" or "celeba_hq" is not that world
        display = str(Path(name).resolve())
    world = World(display, unet, schedule, load_clip(clip, device) if isinstance(clip, str) else clip, device)
    if dataset is None:  # not one of the authors' models: its own tables, if they were measured before
        own = world.cached_own_tables()  # by `world.measure_tables()` or `asyrp-edu intervals --world FOLDER`
        if own is not None:
            world.edit_table, world.boost_table = own
            return world
        warnings.warn(f"{name} is not one of the authors' models, so its t_edit and t_boost come from their CelebA-HQ "
                      "LPIPS tables; measure its own once with world.measure_tables() (GPU, LPIPS weights) or "
                      f"`asyrp-edu intervals --world {name}` (either --along; the default --n, --stride and cache "
                      "folder), and they are used from then on", stacklevel=2)
    world.edit_table = reference_table(dataset or "celeba", "x0_t")
    world.boost_table = reference_table(dataset or "celeba", "x")
    return world


class ClipJudge:
    """A judge for worlds without ground truth: per edit, cos(E_I(image), ΔT) with ΔT = E_T(target) − E_T(source)
    normalised. Only changes of this reading mean something (its level depends on the image)."""

    def __init__(self, clip, prompts: dict[str, tuple[str, str]]):
        from .losses import text_direction

        self.clip = clip
        self.directions = {edit: text_direction(clip.encode_text, *pair)[0] for edit, pair in prompts.items()}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 16) -> dict[str, torch.Tensor]:
        """{edit: (B,) reading} for images (B, 3, H, W) in [-1, 1]."""
        features = torch.cat([self.clip.encode_image(images[i:i + batch_size])
                              for i in range(0, len(images), batch_size)])  # (B, D), unit length
        return {edit: (features @ d.to(features)).cpu() for edit, d in self.directions.items()}


@torch.no_grad()
def check_editor(world: World, edit: str, source: str | None = None, target: str | None = None, n: int = 4,
                 seed: int = 0) -> dict:
    """Does an editor work with this world's model? Edits n images and reports S_dir = cos(ΔI, ΔT) (> 0: it moves
    the way the text says; the authors' CelebA-HQ editors were trained on another conversion of the model)."""
    import torch.nn.functional as F

    from .editing import Intervals, generate_edited
    from .losses import text_direction
    from .inversion_cache import cached_inversion

    if source is None or target is None:
        if world.name == TOY:
            from .evaluate_edits import check_edit_name

            spec = check_edit_name(edit)
            source, target = spec["source"], spec["target"]
        else:
            source, target = OFFICIAL_PROMPTS[edit]
    editor, t_edit, t_boost = world.editor(edit)
    images = world.images(n, seed)
    x_T = cached_inversion(world.unet, world.schedule, images, world.num_steps, settings.cache_dir(), progress=False,
                           fixed_point_iters=world.inversion_iters)
    intervals = Intervals(t_edit, t_boost, world.schedule.T)
    # generate_edited gives both runs the same η = 1 noise below t_boost: only the edit differs
    plain = generate_edited(world.unet, x_T, world.schedule, None, intervals, world.num_steps).clamp(-1, 1)
    edited = generate_edited(world.unet, x_T, world.schedule, editor, intervals, world.num_steps).clamp(-1, 1)
    delta_T, _ = text_direction(world.clip.encode_text, source, target)
    delta_I = world.clip.encode_image(edited) - world.clip.encode_image(plain)
    s_dir = F.cosine_similarity(delta_I, delta_T.to(delta_I)[None], dim=-1)
    return {"edit": edit, "t_edit": t_edit, "t_boost": t_boost, "s_dir": float(s_dir.mean()),
            "mean_pixel_change": float((edited - plain).abs().mean()), "images": (images, plain, edited)}
