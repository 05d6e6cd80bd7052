"""Training the toy world's tiny CLIP (`asyrp-edu train-clip`) on fresh toy faces and captions.

What the editors need from it is that *text directions* point where images move, so training uses
(1) captions naming a random subset of attributes, so short prompts work, (2) a soft multi-positive contrastive target
(caption j is a positive for image i if every phrase it names fits image i), (3) twin pairs: the same face with one
attribute changed and captions that differ in exactly that phrase (hard negatives), plus a small directional loss on
the twins, (4) mild blur / noise / contrast jitter (`tiny_clip.augment`), so the soft predicted images P_t of the toy
DDPM read correctly.
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
from .checks import check_output_path
from .models import save_safetensors_atomic
from .tiny_clip import GROUPS, PHRASES, TINY_CLIP_CONFIG, TinyClip, augment, build_tiny_clip, direction_crosstalk, \
    get_tokenizer, zero_shot_accuracy

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
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size}: each batch holds pairs of twin faces, so it needs at least 2")
    check_output_path(out, "toy_clip.safetensors")
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
        if not torch.isfinite(loss):  # stop before a CLIP full of NaN is saved
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate (--lr)")
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
    from .cli_editors import positive_float, positive_int, seed_value

    p.add_argument("--steps", type=positive_int, default=400)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=seed_value, default=0)
    p.set_defaults(func=_cmd_train_clip)
    return p


if __name__ == "__main__":  # `python -m asyrp_edu.tiny_clip_training train-clip ...` works without cli.py
    parser = argparse.ArgumentParser(prog="python -m asyrp_edu.tiny_clip_training")
    add_train_clip_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    args.func(args)
