"""The toy world's tiny CLIP: open_clip's own `CLIP` class and BPE tokenizer, its prompts, loading and measurements.

Asyrp trains its editors with the directional CLIP loss `1 − cos(E_I(P_edit) − E_I(P_src), E_T(target) − E_T(source))`,
so what matters here is not only zero-shot accuracy but that *text directions* point where images move:
`direction_crosstalk` measures that. How the shipped model was trained is in `tiny_clip_training`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from . import toy
from .models import load_checked, load_weights

if TYPE_CHECKING:
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer

TOY_CLIP_FILE = "toy_clip.safetensors"
CONTEXT_LENGTH = 32
# A 96-wide ViT with 4×4 patches (8×8 = 64 tokens + class token), a 128-wide 3-layer causal text transformer.
TINY_CLIP_CONFIG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 96, "layers": 4, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3,
                 "mlp_ratio": 2.0},
}

# Phrases per attribute group, low ... high. A caption names at most one phrase per group.
PHRASES: dict[str, tuple[str, ...]] = {
    "mouth": ("sad", "neutral", "smiling"),  # an adjective: "a smiling cartoon face"
    "eye_size": ("small eyes", "big eyes"),  # the rest follow "with": "... with big eyes and glasses"
    "skin_tone": ("pale skin", "tanned skin"),
    "hair_color": ("black hair", "brown hair", "blonde hair"),
    "glasses": ("no glasses", "glasses"),
    "alien": ("human skin", "green alien skin"),
}
GROUPS = tuple(PHRASES)
# Zero-shot / direction prompts per attribute: (low prompt, high prompt, low value range, high value range).
PROMPTS: dict[str, tuple[str, str, tuple[float, float], tuple[float, float]]] = {
    "mouth": ("a sad cartoon face", "a smiling cartoon face", (-1.0, -0.5), (0.5, 1.0)),
    "glasses": ("a cartoon face with no glasses", "a cartoon face with glasses", (0.0, 0.0), (1.0, 1.0)),
    "hair_color": ("a cartoon face with black hair", "a cartoon face with blonde hair", (0.0, 0.3), (0.7, 1.0)),
    "skin_tone": ("a cartoon face with pale skin", "a cartoon face with tanned skin", (0.0, 0.3), (0.7, 1.0)),
    "eye_size": ("a cartoon face with small eyes", "a cartoon face with big eyes", (0.0, 0.3), (0.7, 1.0)),
    "alien": ("a cartoon face with human skin", "a cartoon face with green alien skin", (0.0, 0.0), (1.0, 1.0)),
}


def keep_prompt_pairs(items: list[str], edited: str | None = None) -> tuple[tuple[str, str], ...]:
    """(source, target) prompt pairs for EditorConfig.keep: an attribute name of PROMPTS, 'others' (every seen
    attribute but `edited`), or 'SOURCE|TARGET'."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        if item == "others":
            pairs += [(lo, hi) for name, (lo, hi, _, _) in PROMPTS.items() if name not in (edited, "alien")]
        elif item in PROMPTS:
            pairs.append(PROMPTS[item][:2])
        elif item.count("|") == 1:
            pairs.append(tuple(part.strip() for part in item.split("|")))
        else:
            raise ValueError(f"cannot keep {item!r}: give an attribute ({', '.join(PROMPTS)}), 'others', "
                             f"or a prompt pair 'SOURCE|TARGET'")
    return tuple(pairs)


def build_tiny_clip(config: dict | None = None) -> CLIP:
    """An `open_clip.model.CLIP` with random weights from TINY_CLIP_CONFIG (or `config`)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    c = config or TINY_CLIP_CONFIG
    return CLIP(c["embed_dim"], CLIPVisionCfg(**c["vision_cfg"]), CLIPTextCfg(**c["text_cfg"]))


def get_tokenizer(context_length: int = CONTEXT_LENGTH) -> SimpleTokenizer:
    """open_clip's BPE tokenizer; its vocabulary ships inside the open_clip package (no download)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


class TinyClip:
    """Frozen CLIP (the tiny toy one or any open_clip model) for [-1, 1] images; unit-norm, differentiable features."""

    def __init__(self, model, tokenizer=None):
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer or get_tokenizer(model.context_length)
        self.mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)

    def to(self, device: str | torch.device) -> "TinyClip":
        """Move the weights (e.g. to the GPU the editor trains on); returns self."""
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image features (B, D); gradients flow back to `images` (values outside [-1, 1] are not clamped).

        Images of another size are resized (bicubic, antialiased) to the model's input size, e.g. 256² → 224².
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        size = getattr(self.model.visual, "image_size", images.shape[-2:])
        size = (size, size) if isinstance(size, int) else tuple(size)  # some open_clip models keep one int
        x = images.to(self.mean.device, torch.float32)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std  # CLIP's normalisation
        return self.model.encode_image(x, normalize=True)

    def encode_text(self, texts: list[str] | str) -> torch.Tensor:
        """Unit-norm text features (B, D) of a list of prompts."""
        tokens = self.tokenizer([texts] if isinstance(texts, str) else list(texts)).to(self.mean.device)
        with torch.no_grad():
            return self.model.encode_text(tokens, normalize=True)


# --- What the toy DDPM's P_t look like --------------------------------------------------------------------------------


def augment(x: torch.Tensor, g: torch.Generator, pairs: int = 0) -> torch.Tensor:
    """Mild blur, contrast and noise like the soft predicted images P_t; twins (i, i + pairs) get the same draw."""
    def draw() -> torch.Tensor:  # one uniform number per image (per pair), shaped (B, 1, 1, 1)
        r = torch.rand(pairs or len(x), 1, 1, 1, generator=g)
        return torch.cat([r, r]) if pairs else r

    def blur(y: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, 1)

    x = torch.lerp(x, blur(x), 0.8 * draw())
    x = torch.lerp(x, blur(x), 0.8 * draw() * (draw() < 0.4))  # sometimes a second, wider blur
    x = x * (1 - 0.15 * draw())  # a little less contrast
    return x + torch.randn(x.shape, generator=g) * 0.08 * draw()


def load_tiny_clip(path: Path | None = None, device: str | torch.device = "cpu") -> TinyClip:
    """The shipped tiny CLIP (sha256-checked) or the file at `path`, frozen, as a `TinyClip`."""
    tensors, metadata = load_checked(path, TOY_CLIP_FILE, "train-clip")
    config = json.loads(metadata["config"]) if "config" in metadata else TINY_CLIP_CONFIG
    model = build_tiny_clip(config)
    if "token_embedding.ids" not in tensors or "token_embedding.weight" not in tensors:
        raise ValueError(f"{path or TOY_CLIP_FILE} does not hold the tiny CLIP's weights (no token embedding); pass "
                         "a file written by `asyrp-edu train-clip`")
    ids, rows = tensors.pop("token_embedding.ids"), tensors.pop("token_embedding.weight")
    table = torch.zeros_like(model.token_embedding.weight)
    table[ids] = rows.float()  # tokens never seen in training embed to zero
    tensors["token_embedding.weight"] = table
    load_weights(model, tensors, path or TOY_CLIP_FILE, "the tiny CLIP's", "train-clip")
    return TinyClip(model).to(device)


# --- Measurements ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def zero_shot_accuracy(clip: TinyClip, n: int = 1000, seed: int = 0, soft: bool = False) -> dict[str, float]:
    """Two-prompt zero-shot accuracy per attribute on held-out faces at the extremes (optionally blurred/noisy)."""
    report, g = {}, torch.Generator().manual_seed(seed)
    for name, (low_text, high_text, (l0, l1), (h0, h1)) in PROMPTS.items():
        attrs = toy.sample_attributes(n, seed=seed, heldout=True)
        high, u = torch.rand(n, generator=g) < 0.5, torch.rand(n, generator=g)
        attrs[name] = torch.where(high, h0 + (h1 - h0) * u, l0 + (l1 - l0) * u)  # the low or the high extreme
        x = toy.render(attrs)
        if soft:
            x = augment(x, torch.Generator().manual_seed(seed)).clamp(-1, 1)
        txt = clip.encode_text([low_text, high_text])
        img = torch.cat([clip.encode_image(x[i:i + 256]) for i in range(0, n, 256)])
        report[name] = round(float(((img @ txt.T).argmax(1).bool() == high.to(img.device)).float().mean()), 4)
    return report


def direction_crosstalk(clip: TinyClip, n: int = 64, seed: int = 0,
                        moved: tuple[str, ...] = tuple(PROMPTS)) -> dict[str, dict[str, float]]:
    """{moved attribute: {prompt pair: mean cos(E_I(high) − E_I(low), ΔT of the pair)}}: the same faces with one
    attribute moved from its low to its high prompt's range. Clean text directions: ≈ 1 on the diagonal, ≈ 0 off it."""
    unknown = [m for m in moved if m not in PROMPTS]
    if unknown:
        raise KeyError(f"unknown attribute(s) {unknown}; choose from {list(PROMPTS)}")
    attrs = toy.sample_attributes(n, seed=seed, heldout=True)
    with torch.no_grad():
        texts = {k: clip.encode_text([low, high]) for k, (low, high, _, _) in PROMPTS.items()}
        delta_T = {k: t[1] - t[0] for k, t in texts.items()}  # (D,)
        table = {}
        for name in moved:
            (l0, l1), (h0, h1) = PROMPTS[name][2:]
            lo = clip.encode_image(toy.render({**attrs, name: (l0 + l1) / 2}))
            hi = clip.encode_image(toy.render({**attrs, name: (h0 + h1) / 2}))  # (n, D)
            table[name] = {k: float(F.cosine_similarity(hi - lo, d[None], dim=1).mean()) for k, d in delta_T.items()}
    return table


def direction_alignment(clip: TinyClip, attribute: str, n: int = 64, seed: int = 0) -> float:
    """S_dir: mean cos(E_I(high) − E_I(low), E_T(high prompt) − E_T(low prompt)), same faces, one attribute changed."""
    return direction_crosstalk(clip, n, seed, moved=(attribute,))[attribute][attribute]
