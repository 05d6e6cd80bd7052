"""Which unseen attributes can the toy DDPM's h-space reach? New things against seen things pushed past their range.

The `alien` editor never reaches green skin (README, "Known shortfalls"). This asks whether that is about green or
about anything new. Each candidate is a rendered change of the same faces: two seen attributes for calibration
(glasses on, a smile), new colours the toy DDPM never saw in training (green skin, red glasses), new shapes (closed
eyes, a beard, one eye), seen attributes pushed past their training range (eyes twice the largest, mouth
curvature 2, skin darker than any face), and new styles of the whole picture (dim light, greyscale, sepia).
With s = target − face and r = result − reference, per candidate:

- prior: the share of the way, <r, s> / |s|², when the rendered target is noised to t_edit and denoised by 40-step
  DDIM (SDEdit), with the face treated alike (same noise) as the reference;
- oracle: the same share for an f_t trained for 3 epochs on 32 training faces with the rendered change itself as
  the loss, `(P_t^edit − P_t^src − s)²`, applied by the asymmetric process to 64 held-out inverted faces
  (reference: their plain reconstruction). Squared, not absolute: under an L1 loss a change of a few pixels (a
  smile) is not worth making, and the oracle would miss even the seen attributes;
- aim: cos(r, s) of the oracle's result: 1 when it moves exactly towards the target;
- what else the oracle moved, read by the evaluation network as in `asyrp-edu evaluate`: the share of faces whose
  glasses flip and the largest mean |Δ| of a continuous attribute (the candidate's own attribute left out), and
  the mean |Δ| of the background corners. An oracle can score a share by putting on a seen attribute instead
  (glasses for closed eyes); these columns show it.

Means are over the faces a candidate changes. Usage:
    python scripts/unseen_reach.py [--t-edit 400] [--only NAME,NAME] [--out runs/unseen_reach.png]
(about 16 minutes on 2 cores; prints a table and saves targets and oracle results as a grid).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from alien_oracle import train_oracle
from alien_prior import denoise_from
from asyrp_edu import toy
from asyrp_edu.ddim import Schedule
from asyrp_edu.editing import Intervals, generate_edited
from asyrp_edu.evaluate_edits import background_change
from asyrp_edu.evaluator import load_evaluator
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.settings import cache_dir
from asyrp_edu.train_asyrp import cached_inversion
from asyrp_edu.viz import image_grid, save_figure

SIZE = 32
PX = 2.0 / SIZE  # one pixel in toy.render's [-1, 1] frame
DARK = (0.08, 0.08, 0.15)
Attributes = dict[str, torch.Tensor]


def _frame(attrs: Attributes) -> tuple[torch.Tensor, torch.Tensor]:
    """toy.render's coordinates of every face: x (B, 1, S), y (B, S, 1), centred on the face's shift."""
    coords = (torch.arange(SIZE, dtype=torch.float32) + 0.5) * PX - 1.0
    x = coords.view(1, 1, SIZE) - attrs["shift_x"].view(-1, 1, 1)
    return x, coords.view(1, SIZE, 1) - attrs["shift_y"].view(-1, 1, 1)


def _paint(images: torch.Tensor, mask: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Paint rgb ((3,) or (B, 3, 1, 1) in [0, 1]) over images in [-1, 1] where mask (B, S, S) is 1."""
    m = mask.unsqueeze(1)
    return images * (1 - m) + m * (rgb.view(-1, 3, 1, 1) * 2 - 1)


def _skin(attrs: Attributes) -> torch.Tensor:
    """Each face's skin colour: (B, 3, 1, 1)."""
    return toy._lerp(toy.PALE_SKIN, toy.TANNED_SKIN, attrs["skin_tone"])


def _eyes_erased(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """The faces with both eyes painted over in skin colour (glasses stay)."""
    x, y = _frame(attrs)
    r_eye = 0.07 + 0.07 * attrs["eye_size"].view(-1, 1, 1)  # as toy.render draws them
    for cx in (-0.2, 0.2):
        images = _paint(images, toy._soft(torch.sqrt((x - cx) ** 2 + (y + 0.02) ** 2) - r_eye - 0.01, PX), _skin(attrs))
    return _glasses(attrs, images, torch.tensor([0.05, 0.05, 0.05]))


def _glasses(attrs: Attributes, images: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """The rims of the faces that wear glasses painted again, in rgb."""
    x, y = _frame(attrs)
    for cx in (-0.2, 0.2):
        ring = toy._soft((torch.sqrt((x - cx) ** 2 + (y + 0.02) ** 2) - 0.16).abs() - 0.03, PX)
        images = _paint(images, ring * attrs["glasses"].view(-1, 1, 1), rgb)
    return images


def closed_eyes(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """Each eye a dark line."""
    x, y = _frame(attrs)
    images = _eyes_erased(attrs, images)
    for cx in (-0.2, 0.2):
        line = toy._soft((y + 0.02).abs() - 0.025, PX) * toy._soft((x - cx).abs() - 0.12, PX)
        images = _paint(images, line, torch.tensor(DARK))
    return images


def one_eye(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """A single large eye in the middle of the face."""
    x, y = _frame(attrs)
    images = _eyes_erased(attrs, images)
    d = torch.sqrt(x ** 2 + (y + 0.02) ** 2)
    return _paint(_paint(images, toy._soft(d - 0.16, PX), torch.ones(3)), toy._soft(d - 0.08, PX), torch.tensor(DARK))


def red_glasses(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """Red rims on the faces that wear glasses (glasses are always dark in training); the others stay as they are."""
    return _glasses(attrs, images, torch.tensor([0.9, 0.1, 0.1]))


def beard(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """The face below the mouth's top in hair colour."""
    x, y = _frame(attrs)
    face = toy._soft(torch.sqrt((x / 0.50) ** 2 + ((y - 0.08) / 0.58) ** 2) - 1.0, PX / 0.5)  # as toy.render
    return _paint(images, face * (y > 0.28).float(), toy._lerp(toy.DARK_HAIR, toy.BLONDE_HAIR, attrs["hair_color"]))


def dim_light(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """The whole picture at half brightness (every training image is lit alike)."""
    return (images + 1) * 0.5 - 1


def greyscale(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """The whole picture without colour: each pixel's luma in all three channels."""
    luma = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)  # (B, 1, S, S)
    return luma.expand_as(images).clone()


def sepia(attrs: Attributes, images: torch.Tensor) -> torch.Tensor:
    """The whole picture in the brown tones of an old photograph."""
    rgb = (images + 1) / 2  # [0, 1]
    m = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    return (torch.einsum("oc,bchw->bohw", m, rgb).clamp(0, 1) * 2 - 1).contiguous()


def rendered(**values: float) -> Callable[[Attributes, torch.Tensor], torch.Tensor]:
    """A candidate drawn by toy.render itself with some fields set to values."""
    return lambda attrs, images: toy.render({**attrs, **{k: torch.full_like(attrs["mouth"], v)
                                                         for k, v in values.items()}})


# name -> (kind, how to draw it from the attributes and the rendered faces, the judge's attribute it may move)
CANDIDATES = {
    "glasses on": ("seen", rendered(glasses=1.0), "glasses"),
    "smiling (curvature 1)": ("seen", rendered(mouth=1.0), "mouth"),
    "green skin (alien)": ("new colour", rendered(alien=1.0), None),
    "red glasses": ("new colour", red_glasses, None),
    "closed eyes": ("new shape", closed_eyes, "eye_size"),
    "beard": ("new shape", beard, None),
    "one eye": ("new shape", one_eye, "eye_size"),
    "eyes twice the largest": ("past the range", rendered(eye_size=2.0), "eye_size"),
    "mouth curvature 2": ("past the range", rendered(mouth=2.0), "mouth"),
    "skin tone 1.6": ("past the range", rendered(skin_tone=1.6), "skin_tone"),
    "dim light": ("new style", dim_light, None),
    "greyscale": ("new style", greyscale, None),
    "sepia photo": ("new style", sepia, None),
}


def share_and_aim(result: torch.Tensor, reference: torch.Tensor, target: torch.Tensor, face: torch.Tensor):
    """Over the images the candidate changes: the mean share of the way, <r, s> / |s|², and the mean aim, cos(r, s),
    with r = result − reference and s = target − face."""
    r, s = (result - reference).flatten(1), (target - face).flatten(1)
    changed = s.pow(2).sum(1) > 1e-6  # red glasses and glasses on leave some faces as they are
    share = (r * s).sum(1) / s.pow(2).sum(1).clamp_min(1e-8)
    aim = torch.nn.functional.cosine_similarity(r, s, dim=1)
    return float(share[changed].mean()), float(aim[changed].mean())


def main() -> None:
    """Print the prior and oracle shares of every candidate and save the grid."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--t-edit", type=int, default=400)
    p.add_argument("--only", help="comma-separated candidate names (default: all)")
    p.add_argument("--out", type=Path, default=Path("runs/unseen_reach.png"))
    args = p.parse_args()
    first = Schedule.linear().timesteps(40)[0]  # the 40-step grid this script edits on
    if not 0 <= args.t_edit <= first:  # checked before the inversions, which take a minute
        p.error(f"--t-edit must lie in [0, {first}] (above the first of the 40 steps nothing is edited)")
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    unet, schedule = load_toy_ddpm()
    unet.requires_grad_(False)
    train_attrs, held_attrs = toy.sample_attributes(32, seed=0), toy.sample_attributes(64, seed=0, heldout=True)
    train_faces, held_faces = toy.render(train_attrs), toy.render(held_attrs)
    cache = cache_dir()
    x_T_train = cached_inversion(unet, schedule, train_faces, 40, cache, progress=False, fixed_point_iters=2)
    x_T_held = cached_inversion(unet, schedule, held_faces, 40, cache, progress=False, fixed_point_iters=2)
    with torch.no_grad():
        plain = generate_edited(unet, x_T_held, schedule, None, Intervals(args.t_edit), 40).clamp(-1, 1)
        torch.manual_seed(1)
        faces_denoised = denoise_from(unet, schedule, held_faces, args.t_edit)
    judge = load_evaluator()
    before = judge(plain)
    rows, titles = [held_faces[:8]], ["faces"]
    print(f"share of the way to the target (t_edit {args.t_edit}; 64 held-out faces)")
    print(f"{'candidate':24} {'kind':15} {'prior':>6} {'oracle':>7} {'aim':>5} {'flips':>6} {'leak':>5} {'bg':>5}")
    for name in names:
        kind, draw, own = CANDIDATES[name]
        targets = draw(held_attrs, held_faces)
        with torch.no_grad():
            torch.manual_seed(1)  # the same noise as faces_denoised
            prior, _ = share_and_aim(denoise_from(unet, schedule, targets, args.t_edit), faces_denoised, targets,
                                     held_faces)
        changes = draw(train_attrs, train_faces) - train_faces  # (32, 3, 32, 32)

        def loss(P_edit: torch.Tensor, P_src: torch.Tensor, batch: slice) -> torch.Tensor:
            # P_t^edit − P_t^src should be the rendered change, target − face
            return (P_edit - P_src - changes[batch]).pow(2).mean()

        torch.manual_seed(0)  # the same initial f_t for every candidate
        editor = train_oracle(unet, schedule, x_T_train, loss, args.t_edit)
        with torch.no_grad():
            edited = generate_edited(unet, x_T_held, schedule, editor, Intervals(args.t_edit), 40).clamp(-1, 1)
        oracle, aim = share_and_aim(edited, plain, targets, held_faces)
        after = judge(edited)
        flips = 0.0 if own == "glasses" else float((after["glasses"] != before["glasses"]).float().mean())
        leak = max(float((after[k] - before[k]).abs().mean()) for k in toy.CONTINUOUS_ATTRIBUTES if k != own)
        bg = float(background_change(edited, plain).mean())
        print(f"{name:24} {kind:15} {prior:6.2f} {oracle:7.2f} {aim:5.2f} {flips:6.0%} {leak:5.2f} {bg:5.2f}",
              flush=True)
        rows += [targets[:8], edited[:8]]
        titles += [name, "oracle f_t"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(image_grid(rows, row_titles=titles, scale=0.9), args.out, dpi=80)
    print(f"grid: {args.out}")


if __name__ == "__main__":
    main()
