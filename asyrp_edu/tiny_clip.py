"""The toy world's tiny CLIP: open_clip's own `CLIP` class and BPE tokenizer, trained on toy faces and captions.

Asyrp trains its editors with the directional CLIP loss `1 − cos(E_I(P_edit) − E_I(P_src), E_T(target) − E_T(source))`,
so what matters here is not only zero-shot accuracy but that *text directions* point where images move. Training uses
(1) captions naming a random subset of attributes, so short prompts work, (2) a soft multi-positive contrastive target
(caption j is a positive for image i if every phrase it names fits image i), (3) twin pairs: the same face with one
attribute changed and captions that differ in exactly that phrase (hard negatives), plus a small directional loss on
the twins, (4) mild blur / noise / contrast jitter, so the soft predicted images P_t of the toy DDPM read correctly.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import toy
from .models import load_checked, save_safetensors_atomic

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


def build_tiny_clip(config: dict | None = None):
    """An `open_clip.model.CLIP` with random weights from TINY_CLIP_CONFIG (or `config`)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    c = config or TINY_CLIP_CONFIG
    return CLIP(c["embed_dim"], CLIPVisionCfg(**c["vision_cfg"]), CLIPTextCfg(**c["text_cfg"]))


def get_tokenizer(context_length: int = CONTEXT_LENGTH):
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
        size = tuple(getattr(self.model.visual, "image_size", images.shape[-2:]))
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


# --- Captions with soft ground truth ---------------------------------------------------------------------------------


def _ramp(v: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """0 below a, 1 above b, linear between."""
    return ((v - a) / (b - a)).clamp(0, 1)


def phrase_memberships(attrs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """How well each phrase fits each image, in [0, 1]: {group: (B, n_phrases)}, soft around the caption thirds."""
    m, e, s, h = attrs["mouth"], attrs["eye_size"], attrs["skin_tone"], attrs["hair_color"]
    g, al = attrs["glasses"], attrs["alien"]
    smile, sad = _ramp(m, 0.2, 0.45), _ramp(-m, 0.2, 0.45)
    black, blonde = _ramp(1 - h, 0.58, 0.75), _ramp(h, 0.58, 0.75)
    return {
        "mouth": torch.stack([sad, 1 - sad - smile, smile], 1),
        "eye_size": torch.stack([_ramp(1 - e, 0.58, 0.75), _ramp(e, 0.58, 0.75)], 1),
        "skin_tone": torch.stack([_ramp(1 - s, 0.58, 0.75), _ramp(s, 0.58, 0.75)], 1) * (1 - al)[:, None],
        "hair_color": torch.stack([black, 1 - black - blonde, blonde], 1),
        "glasses": torch.stack([1 - g, g], 1),
        "alien": torch.stack([1 - al, al], 1),
    }


def compose_caption(named: dict[str, str], rng: random.Random | None = None) -> str:
    """'a smiling cartoon face with big eyes and glasses' from {group: phrase}; "with" phrases in random order."""
    mood = named.get("mouth")
    parts = [p for k, p in named.items() if k != "mouth"]
    if rng is not None:
        rng.shuffle(parts)
    head = f"a {mood} cartoon face" if mood else "a cartoon face"
    if not parts:
        return head
    return f"{head} with " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])


def _twin_batch(n_pairs: int, seed: int, g: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Attributes of 2·n_pairs faces: face i + n_pairs is face i with one group (returned, (n_pairs,)) changed."""
    base = toy.sample_attributes(n_pairs, seed=seed)
    base["alien"] = (torch.rand(n_pairs, generator=g) < 0.25).float()
    twin = {k: v.clone() for k, v in base.items()}
    changed = torch.randint(len(GROUPS), (n_pairs,), generator=g)
    for j, name in enumerate(GROUPS):
        sel = changed == j
        lo, hi = {**toy.ATTRIBUTE_RANGES, **toy.UNSEEN_ATTRIBUTES}[name]
        if name in ("glasses", "alien"):
            twin[name][sel] = 1 - base[name][sel]
        else:  # move by 35-65% of the range, wrapping around, so the value really changes
            shift = (0.35 + 0.3 * torch.rand(int(sel.sum()), generator=g)) * (hi - lo)
            twin[name][sel] = lo + (base[name][sel] - lo + shift) % (hi - lo)
    return {k: torch.cat([base[k], twin[k]]) for k in base}, changed


def _captions(attrs: dict[str, torch.Tensor], changed: torch.Tensor, rng: random.Random,
              p_name: float = 0.45) -> tuple[list[str], torch.Tensor]:
    """Captions for a twin batch (both twins name the same groups, always the changed one) and the (B, B) fit matrix."""
    member = phrase_memberships(attrs)
    n = len(changed)
    plans = [([k for j, k in enumerate(GROUPS) if j == int(changed[i]) or rng.random() < p_name], rng.random())
             for i in range(n)]
    log_fit = torch.zeros(2 * n, 2 * n)  # log_fit[i, j]: log of how well caption j fits image i
    texts = []
    for i in range(2 * n):
        groups, order_seed = plans[i % n]
        named = {}
        for k in groups:
            best = int(member[k][i].argmax())
            if float(member[k][i, best]) >= 0.5:  # name a phrase only where it clearly fits
                named[k] = PHRASES[k][best]
                log_fit[:, i] += torch.log(member[k][:, best] + 1e-6)
        texts.append(compose_caption(named, random.Random(order_seed)))  # same phrase order in both twins
    return texts, log_fit


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


# --- Training -------------------------------------------------------------------------------------------------------


def clip_losses(model, images: torch.Tensor, tokens: torch.Tensor, log_fit: torch.Tensor, pairs: int,
                mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(soft multi-positive contrastive loss, directional loss on twins) for one batch."""
    img = model.encode_image((((images + 1) / 2) - mean) / std, normalize=True)
    txt = model.encode_text(tokens, normalize=True)
    logits = model.logit_scale.exp() * img @ txt.T  # (B images, B captions)
    fit = log_fit.exp()
    contrastive = (F.cross_entropy(logits, fit / fit.sum(1, keepdim=True)) +
                   F.cross_entropy(logits.T, fit.T / fit.T.sum(1, keepdim=True))) / 2
    d_img, d_txt = img[pairs:] - img[:pairs], txt[pairs:] - txt[:pairs]
    valid = (d_txt.norm(dim=1) > 1e-4).float()  # where the twins' captions differ (the changed phrase was nameable)
    direction = ((1 - F.cosine_similarity(d_img, d_txt, dim=1)) * valid).sum() / valid.sum().clamp(min=1)
    return contrastive, direction


def train_tiny_clip(out: Path, steps: int = 400, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                    direction_weight: float = 0.5, config: dict | None = None,
                    progress: bool = True) -> tuple[TinyClip, list[float]]:
    """Contrastive training on fresh toy faces (twin pairs, random-subset captions); saves safetensors + config."""
    torch.manual_seed(seed)
    config = config or TINY_CLIP_CONFIG
    model, tokenizer = build_tiny_clip(config), get_tokenizer(config["text_cfg"]["context_length"])
    no_decay = ("token_embedding", "positional_embedding", "class_embedding", "logit_scale")
    decay = {n: p.ndim >= 2 and not any(k in n for k in no_decay) for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([{"params": [p for n, p in model.named_parameters() if decay[n]], "weight_decay": 0.05},
                             {"params": [p for n, p in model.named_parameters() if not decay[n]], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    wrapper = TinyClip(model, tokenizer)
    model.train().requires_grad_(True)
    used = torch.zeros(model.vocab_size, dtype=torch.bool)  # token ids seen in training; only these are saved
    rng, losses, pairs = random.Random(seed), [], batch_size // 2
    for step in (bar := tqdm(range(steps), desc="train tiny CLIP", disable=not progress)):
        g = torch.Generator().manual_seed(seed * 7919 + step)
        attrs, changed = _twin_batch(pairs, seed=seed * 7919 + step, g=g)
        texts, log_fit = _captions(attrs, changed, rng)
        tokens = tokenizer(texts)
        used[tokens.flatten()] = True
        x = augment(toy.render(attrs), g, pairs=pairs)
        contrastive, direction = clip_losses(model, x, tokens, log_fit, pairs, wrapper.mean, wrapper.std)
        loss = contrastive + direction_weight * direction
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # temperature at most 100, as in CLIP
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", con=f"{contrastive.item():.3f}", dir=f"{direction.item():.3f}")
    model.eval().requires_grad_(False)
    state = dict(model.state_dict())
    ids = used.nonzero().flatten()
    state["token_embedding.weight"] = state["token_embedding.weight"][ids]  # keep only rows the tokens used
    state["token_embedding.ids"] = ids
    meta = {"config": json.dumps(config), "seed": seed, "steps": steps, "batch_size": batch_size,
            "lr": lr, "direction_weight": direction_weight, "tokenizer": "open_clip SimpleTokenizer",
            "normalisation": "OpenAI mean/std applied to (x + 1) / 2"}
    save_safetensors_atomic(state, Path(out), meta)
    with torch.no_grad():  # zero the unused rows in memory too, so the returned model equals the saved one
        mask = torch.ones(model.vocab_size, dtype=torch.bool)
        mask[ids] = False
        model.token_embedding.weight[mask] = 0
    return wrapper, losses


def load_tiny_clip(path: Path | None = None, device: str | torch.device = "cpu") -> TinyClip:
    """The shipped tiny CLIP (sha256-checked) or the file at `path`, frozen, as a `TinyClip`."""
    tensors, metadata = load_checked(path, TOY_CLIP_FILE, "train-clip")
    config = json.loads(metadata["config"]) if "config" in metadata else TINY_CLIP_CONFIG
    model = build_tiny_clip(config)
    ids, rows = tensors.pop("token_embedding.ids"), tensors.pop("token_embedding.weight")
    table = torch.zeros_like(model.token_embedding.weight)
    table[ids] = rows.float()  # tokens never seen in training embed to zero
    tensors["token_embedding.weight"] = table
    model.load_state_dict(tensors)
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


# --- Command line ---------------------------------------------------------------------------------------------------


def _cmd_train_clip(args: argparse.Namespace) -> None:
    """`asyrp-edu train-clip`: train, save, then print zero-shot accuracy and how clean the text directions are."""
    clip, losses = train_tiny_clip(Path(args.out), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                   seed=args.seed)
    report = {"final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
              "zero_shot": zero_shot_accuracy(clip), "zero_shot_soft": zero_shot_accuracy(clip, soft=True),
              "direction_crosstalk": {k: {p: round(v, 3) for p, v in row.items()}
                                      for k, row in direction_crosstalk(clip).items()}}
    print(f"saved {args.out}\n{json.dumps(report, indent=2)}")


def add_train_clip_parser(subparsers) -> argparse.ArgumentParser:
    """Register `train-clip` on the `asyrp-edu` sub-command parsers."""
    p = subparsers.add_parser("train-clip", help="train the toy world's tiny CLIP (open_clip classes) on toy faces")
    p.add_argument("--out", default="runs/toy_clip.safetensors")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train_clip)
    return p


if __name__ == "__main__":  # `python -m asyrp_edu.tiny_clip train-clip ...` works before cli.py wires it in
    parser = argparse.ArgumentParser(prog="python -m asyrp_edu.tiny_clip")
    add_train_clip_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    args.func(args)
