"""The toy world: procedural cartoon faces with continuous ground-truth attributes and captions."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

# Continuous attributes the generator draws, each in [low, high]; "glasses" is binary (0 or 1).
ATTRIBUTE_RANGES: dict[str, tuple[float, float]] = {
    "mouth": (-1.0, 1.0),  # mouth curvature: sad -1 ... neutral 0 ... smiling +1
    "eye_size": (0.0, 1.0),  # small ... large
    "skin_tone": (0.0, 1.0),  # pale ... tanned
    "hair_color": (0.0, 1.0),  # black ... blonde
    "glasses": (0.0, 1.0),  # off / on
}
# Attributes the toy DDPM never sees in training (always 0 in `sample_attributes`) but captions can name:
# the toy world's "unseen domain", like the paper's Pixar or Neanderthal edits.
UNSEEN_ATTRIBUTES: dict[str, tuple[float, float]] = {
    "alien": (0.0, 1.0),  # 0 = human skin ... 1 = green alien skin
}
# Nuisance factors: they vary but carry no meaning.
NUISANCE_RANGES: dict[str, tuple[float, float]] = {
    "shift_x": (-0.08, 0.08),
    "shift_y": (-0.08, 0.08),
    "background_hue": (0.0, 1.0),
}
ATTRIBUTES = tuple(ATTRIBUTE_RANGES)
ALL_FIELDS = tuple(ATTRIBUTE_RANGES) + tuple(UNSEEN_ATTRIBUTES) + tuple(NUISANCE_RANGES)
BINARY_ATTRIBUTES = ("glasses",)
CONTINUOUS_ATTRIBUTES = tuple(a for a in ATTRIBUTES if a not in BINARY_ATTRIBUTES)
DEFAULT_SIZE = 32
# held-out images come from another seed stream. torch's CPU generator keeps the low 32 bits of a seed, so the two
# streams split that range: training seeds map into [0, HELDOUT_SEED_OFFSET), held-out ones into
# [HELDOUT_SEED_OFFSET, 2**32). They never meet, whatever the seed.
HELDOUT_SEED_OFFSET = 1_000_000_007


def hashed_seed(text: str, span: int = 2**32) -> int:
    """A seed in [0, span) named by text (sha256): a stream of its own, unrelated to any nearby number's."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % span


def generator_seed(seed: int, heldout: bool = False) -> int:
    """The torch seed behind `sample(seed=seed, heldout=heldout)`, always inside its stream's part of torch's 32-bit
    range: the seed itself (plus the offset) where it fits, as every seed the package uses does; any other seed is
    hashed into that part (not wrapped, which would make seeds k and k + span draw the same faces)."""
    span = 2**32 - HELDOUT_SEED_OFFSET if heldout else HELDOUT_SEED_OFFSET
    if not 0 <= seed < span:
        seed = hashed_seed(f"asyrp_edu.toy/{'heldout' if heldout else 'training'}/{seed}", span)
    return (HELDOUT_SEED_OFFSET if heldout else 0) + seed


def check_attribute_names(names) -> None:
    """Raise a KeyError naming the valid attributes if any name is unknown."""
    unknown = [n for n in names if n not in ALL_FIELDS]
    if unknown:
        raise KeyError(
            f"unknown toy attribute(s) {unknown}; valid names are {list(ALL_FIELDS)} "
            f"(edit attributes: {list(ATTRIBUTES) + list(UNSEEN_ATTRIBUTES)})"
        )


def sample_attributes(n: int, seed: int = 0, heldout: bool = False) -> dict[str, torch.Tensor]:
    """Draw n attribute vectors (the training distribution; unseen attributes stay 0), deterministic from seed."""
    g = torch.Generator().manual_seed(generator_seed(seed, heldout))
    attrs: dict[str, torch.Tensor] = {}
    for name, (low, high) in {**ATTRIBUTE_RANGES, **NUISANCE_RANGES}.items():
        attrs[name] = low + (high - low) * torch.rand(n, generator=g)
    attrs["glasses"] = (torch.rand(n, generator=g) < 0.5).float()
    for name in UNSEEN_ATTRIBUTES:
        attrs[name] = torch.zeros(n)
    return attrs


def _complete(attrs: dict[str, torch.Tensor | float]) -> dict[str, torch.Tensor]:
    """Fill missing fields with neutral defaults and broadcast everything to one batch size."""
    check_attribute_names(attrs)
    n = max((torch.as_tensor(v).numel() for v in attrs.values()), default=1)
    defaults = {"mouth": 0.0, "eye_size": 0.5, "skin_tone": 0.3, "hair_color": 0.3, "glasses": 0.0,
                "alien": 0.0, "shift_x": 0.0, "shift_y": 0.0, "background_hue": 0.55}
    out = {}
    for name in ALL_FIELDS:
        v = torch.as_tensor(attrs.get(name, defaults[name]), dtype=torch.float32).flatten()
        out[name] = v.expand(n) if v.numel() == 1 else v
        if out[name].numel() != n:
            raise ValueError(f"attribute {name!r} has {v.numel()} values but the batch has {n}; give one or {n}")
    return out


# The colours the faces are painted with (RGB in [0, 1]); hair and skin blend between their two ends.
DARK_HAIR, BLONDE_HAIR = (0.16, 0.09, 0.05), (0.98, 0.86, 0.40)
PALE_SKIN, TANNED_SKIN = (1.0, 0.87, 0.78), (0.58, 0.36, 0.20)


def _lerp(a: tuple[float, float, float], b: tuple[float, float, float], w: torch.Tensor) -> torch.Tensor:
    """Blend two RGB colours per image: w (B,) -> (B, 3, 1, 1)."""
    a_, b_ = torch.tensor(a), torch.tensor(b)
    return (a_ + (b_ - a_) * w[:, None]).view(-1, 3, 1, 1)


def hue_to_rgb(h: torch.Tensor, s: float = 0.35, v: float = 0.9) -> torch.Tensor:
    """Pastel background colours from a hue in [0, 1]: (B,) -> (B, 3, 1, 1)."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    rgb = v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return rgb.view(-1, 3, 1, 1)


def _soft(signed_distance: torch.Tensor, pixel: float) -> torch.Tensor:
    """Anti-aliased inside-mask: 1 inside (distance < 0), 0 outside, a one-pixel ramp between."""
    return torch.clamp(0.5 - signed_distance / pixel, 0.0, 1.0)


def render(attrs: dict[str, torch.Tensor | float], size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Draw faces from attributes: returns images (B, 3, size, size) in [-1, 1]."""
    if size < 16:
        raise ValueError(f"size={size} is too small to draw a face; use size >= 16 (default {DEFAULT_SIZE})")
    a = _complete(attrs)
    B = a["mouth"].numel()
    px = 2.0 / size  # one pixel in the [-1, 1] coordinate frame
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * px - 1.0
    y = coords.view(1, size, 1) - a["shift_y"].view(B, 1, 1)  # (B, S, 1), y grows downwards
    x = coords.view(1, 1, size) - a["shift_x"].view(B, 1, 1)  # (B, 1, S)

    def v(name: str) -> torch.Tensor:
        return a[name].view(B, 1, 1)

    img = hue_to_rgb(a["background_hue"]).expand(B, 3, size, size).clone()

    def paint(mask: torch.Tensor, colour: torch.Tensor) -> None:
        m = mask.unsqueeze(1)  # (B, 1, S, S)
        img.mul_(1 - m).add_(m * colour)

    # Hair: a cap behind the head, dark brown ... blonde.
    hair = _soft(torch.sqrt((x / 0.66) ** 2 + ((y + 0.12) / 0.66) ** 2) - 1.0, px / 0.66)
    hair = hair * _soft(y - 0.15, px)
    paint(hair, _lerp(DARK_HAIR, BLONDE_HAIR, a["hair_color"]))
    # Face: an ellipse, pale ... tanned, pulled towards green by the unseen "alien" attribute.
    skin = _lerp(PALE_SKIN, TANNED_SKIN, a["skin_tone"])
    skin = skin + (torch.tensor([0.35, 0.85, 0.30]).view(1, 3, 1, 1) - skin) * v("alien").unsqueeze(1)
    face = _soft(torch.sqrt((x / 0.50) ** 2 + ((y - 0.08) / 0.58) ** 2) - 1.0, px / 0.5)
    paint(face, skin)
    # Fringe over the forehead, so hair colour is visible inside the face too.
    fringe = _soft(torch.sqrt((x / 0.52) ** 2 + ((y + 0.42) / 0.26) ** 2) - 1.0, px / 0.26) * face
    paint(fringe, _lerp(DARK_HAIR, BLONDE_HAIR, a["hair_color"]))
    # Eyes: white sclera with a dark pupil; radius grows with eye_size.
    r_eye = 0.07 + 0.07 * v("eye_size")
    for cx in (-0.2, 0.2):
        d = torch.sqrt((x - cx) ** 2 + (y + 0.02) ** 2)
        paint(_soft(d - r_eye, px), torch.tensor([1.0, 1.0, 1.0]).view(1, 3, 1, 1))
        paint(_soft(d - 0.55 * r_eye, px), torch.tensor([0.08, 0.08, 0.15]).view(1, 3, 1, 1))
    # Glasses: a dark ring around each eye and a bridge, drawn only where glasses = 1.
    g = v("glasses")
    for cx in (-0.2, 0.2):
        d = torch.sqrt((x - cx) ** 2 + (y + 0.02) ** 2)
        paint(_soft((d - 0.16).abs() - 0.03, px) * g, torch.tensor([0.05, 0.05, 0.05]).view(1, 3, 1, 1))
    bridge = _soft((y + 0.02).abs() - 0.025, px) * _soft(x.abs() - 0.06, px)
    paint(bridge * g, torch.tensor([0.05, 0.05, 0.05]).view(1, 3, 1, 1))
    # Mouth: an arc y = y0 + 0.2·curvature·(1 − x²/w²) − 0.1·curvature — corners up when smiling, down when sad.
    w = 0.26
    arc_y = 0.36 + 0.2 * v("mouth") * (1 - (x / w) ** 2) - 0.1 * v("mouth")
    mouth = _soft((y - arc_y).abs() - 0.035, px) * _soft(x.abs() - w, px)
    paint(mouth, torch.tensor([0.55, 0.10, 0.12]).view(1, 3, 1, 1))
    return (img * 2 - 1).clamp(-1, 1)


@dataclass(frozen=True)
class _Words:
    """Caption words for the low / middle / high thirds of an attribute (empty = not mentioned)."""

    low: str
    mid: str
    high: str

    def pick(self, value: float, lo: float, hi: float) -> str:
        third = (hi - lo) / 3
        return self.low if value < lo + third else (self.high if value > hi - third else self.mid)


_CAPTION_WORDS = {
    "mouth": _Words("sad", "neutral", "smiling"),
    "eye_size": _Words("small eyes", "", "big eyes"),
    "skin_tone": _Words("pale skin", "", "tanned skin"),
    "hair_color": _Words("black hair", "brown hair", "blonde hair"),
}


def caption(attrs: dict[str, torch.Tensor | float], index: int = 0) -> str:
    """A caption naming the image's attributes, e.g. 'a smiling face with big eyes, blonde hair and glasses'."""
    a = _complete(attrs)
    val = {k: float(t[index]) for k, t in a.items()}
    mood = _CAPTION_WORDS["mouth"].pick(val["mouth"], *ATTRIBUTE_RANGES["mouth"])
    parts = [_CAPTION_WORDS[k].pick(val[k], *ATTRIBUTE_RANGES[k]) for k in ("eye_size", "skin_tone", "hair_color")]
    if val["alien"] >= 0.5:
        parts = [p for p in parts if not p.endswith("skin")] + ["green alien skin"]
    if val["glasses"] >= 0.5:
        parts.append("glasses")
    parts = [p for p in parts if p]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    article = "an" if mood[0] in "aeiou" else "a"
    return f"{article} {mood} cartoon face with {body}" if parts else f"{article} {mood} cartoon face"


def sample(n: int, seed: int = 0, heldout: bool = False,
           size: int = DEFAULT_SIZE) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images (n, 3, size, size) in [-1, 1] and their attributes, deterministic from seed."""
    attrs = sample_attributes(n, seed=seed, heldout=heldout)
    return render(attrs, size=size), attrs
