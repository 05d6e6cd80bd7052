"""One switch for every notebook: WORLD = "toy" (CPU, shipped models) or a real model ("celeba_hq", …, on a GPU).

A `World` bundles what the notebooks need — the frozen U-Net and its schedule, a CLIP, editors by name and the
paper's settings — so the same cells run in both worlds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .ddim import Schedule
from .intervals import DistanceTable, reference_table, t_boost_from_table, t_edit_from_table
from .settings import default_device

TOY = "toy"
# The prompts the authors trained their CelebA-HQ editors with (their configs), for t_edit and λ_recon.
OFFICIAL_PROMPTS: dict[str, tuple[str, str]] = {
    "smiling": ("face", "smiling face"), "pixar": ("human", "3d render in the style of Pixar"),
    "neanderthal": ("human", "neanderthal"), "tanned": ("face", "tanned face"), "sad": ("face", "sad face"),
    "angry": ("face", "angry face"), "young": ("person", "young person"), "makeup": ("face", "face with makeup"),
}


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

    @property
    def image_size(self) -> int:
        """Side of the model's square images."""
        return int(self.unet.config.sample_size)

    def intervals_for(self, source: str, target: str) -> tuple[int, int]:
        """(t_edit, t_boost) by the paper's rules: LPIPS editing strength and quality deficiency."""
        from .losses import text_direction

        _, cosine = text_direction(self.clip.encode_text, source, target)
        return t_edit_from_table(self.edit_table, max(cosine, 1e-3)), t_boost_from_table(self.boost_table)

    def editor(self, edit: str):
        """(f_t, t_edit, t_boost) for a named edit: the shipped toy editors, or the authors' released ones."""
        if self.name == TOY:
            from .train_asyrp import load_editor

            block, config = load_editor(self.unet, edit=edit)
            return block.to(self.device), config.t_edit, 0
        from .registry import official_editor

        if edit not in OFFICIAL_PROMPTS:
            raise KeyError(f"no prompts recorded for the authors' {edit!r} editor; known: {sorted(OFFICIAL_PROMPTS)}")
        t_edit, t_boost = self.intervals_for(*OFFICIAL_PROMPTS[edit])
        return official_editor(edit, self.name).to(self.device), t_edit, t_boost

    def images(self, n: int, seed: int = 0) -> torch.Tensor:
        """n images to edit: held-out toy faces, or DDIM samples of the real model (bring your own photo instead)."""
        if self.name == TOY:
            from . import toy

            return toy.sample(n, seed=seed, heldout=True)[0].to(self.device)
        from .quality import sample_from_noise

        return sample_from_noise(self.unet, self.schedule, n, num_steps=self.num_steps, seed=seed, batch_size=4,
                                 progress=True).to(self.device)


def load_world(name: str | None = None, device: str | torch.device | None = None, clip: str = "ViT-B-32") -> World:
    """The world named `name` (default: `default_world()`); a local model folder also works as a name."""
    name = name or default_world()
    device = torch.device(device) if device is not None else default_device()
    if name == TOY:
        from .intervals import toy_tables
        from .models import load_toy_ddpm
        from .tiny_clip import load_tiny_clip

        unet, schedule = load_toy_ddpm(device=device)
        world = World(TOY, unet, schedule, load_tiny_clip(device=device), device)
        world.edit_table, world.boost_table = toy_tables(unet, schedule, n=16, stride=10, progress=False)
        return world
    from .registry import DDPMS, load_clip, load_ddpm

    unet, schedule = load_ddpm(name, device)
    dataset = DDPMS[name].lpips_dataset if name in DDPMS else None
    world = World(name if name in DDPMS else Path(name).name, unet, schedule, load_clip(clip, device), device)
    world.edit_table = reference_table(dataset or "celeba", "x0_t")
    world.boost_table = reference_table(dataset or "celeba", "x")
    return world


@torch.no_grad()
def check_editor(world: World, edit: str, source: str | None = None, target: str | None = None, n: int = 4,
                 seed: int = 0) -> dict:
    """Does an editor work with this world's model? Edits n images and reports S_dir = cos(ΔI, ΔT) (> 0: it moves
    the way the text says; the authors' CelebA-HQ editors were trained on another conversion of the model)."""
    import torch.nn.functional as F

    from .editing import Intervals, generate_edited
    from .losses import text_direction
    from .train_asyrp import cached_inversion

    if source is None or target is None:
        if world.name == TOY:
            from .evaluate_edits import check_edit_name

            spec = check_edit_name(edit)
            source, target = spec["source"], spec["target"]
        else:
            source, target = OFFICIAL_PROMPTS[edit]
    editor, t_edit, t_boost = world.editor(edit)
    images = world.images(n, seed)
    x_T = cached_inversion(world.unet, world.schedule, images, world.num_steps, Path("runs/cache"), progress=False)
    intervals = Intervals(t_edit, t_boost)
    plain = generate_edited(world.unet, x_T, world.schedule, None, intervals, world.num_steps).clamp(-1, 1)
    edited = generate_edited(world.unet, x_T, world.schedule, editor, intervals, world.num_steps).clamp(-1, 1)
    delta_T, _ = text_direction(world.clip.encode_text, source, target)
    delta_I = world.clip.encode_image(edited) - world.clip.encode_image(plain)
    s_dir = F.cosine_similarity(delta_I, delta_T.to(delta_I)[None], dim=-1)
    return {"edit": edit, "t_edit": t_edit, "t_boost": t_boost, "s_dir": float(s_dir.mean()),
            "mean_pixel_change": float((edited - plain).abs().mean()), "images": (images, plain, edited)}
