"""The toy world's judge: a small CNN that reads attributes off images, trained on generator ground truth only."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import toy
from .checks import check_images, check_output_path
from .models import TOY_EVALUATOR_FILE, load_checked, load_weights, save_safetensors_atomic


class AttributeNet(nn.Module):
    """Regresses the continuous toy attributes and classifies glasses from a (B, 3, 32, 32) image."""

    def __init__(self, width: int = 32):
        super().__init__()
        c = width

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.features = nn.Sequential(
            block(3, c, 1),  # (B, c, 32, 32)
            block(c, 2 * c, 2), block(2 * c, 2 * c, 1),  # (B, 2c, 16, 16)
            block(2 * c, 4 * c, 2), block(4 * c, 4 * c, 1),  # (B, 4c, 8, 8)
            block(4 * c, 4 * c, 2),  # (B, 4c, 4, 4)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * c * 16, 256), nn.SiLU(),
                                  nn.Linear(256, len(toy.ATTRIBUTES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (B, 5): continuous attributes in their own units, then the glasses logit."""
        return self.head(self.features(x))


def _targets(attrs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stack the generator's ground truth in the network's output order: (B, 5)."""
    return torch.stack([attrs[k] for k in toy.ATTRIBUTES], dim=1)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild blur and noise on half of the images, so the judge reads both clean faces and the slightly soft
    ones a diffusion model draws (always-on noise would make clean images unfamiliar to it)."""
    B = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    on = (torch.rand(B, 1, 1, 1, generator=g) < 0.5).float()
    w = torch.rand(B, 1, 1, 1, generator=g) * 0.6 * on
    x = x * (1 - w) + blur * w
    noise = torch.randn(x.shape, generator=g) * torch.rand(B, 1, 1, 1, generator=g) * 0.05 * on
    return (x + noise).clamp(-1, 1)


def augmentation_seed(seed: int, step: int) -> int:
    """Seed of step `step`'s augmentation draws: a stream of its own, unrelated to the batch's `toy.sample` seed.

    Sharing the batch's seed made the augmentation copy the attributes: the first draws of both generators are equal,
    so every blurred face was a sad one (blur on ⇔ mouth < 0), and the judge read soft smiles too low."""
    return toy.hashed_seed(f"asyrp_edu.evaluator.augment/{seed}/{step}")  # torch's CPU generator keeps 32 bits


def training_batch(seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step `step`'s judge-training batch: augmented generator images (B, 3, 32, 32) and their truth (B, 5)."""
    x, attrs = toy.sample(batch_size, seed=seed * 7919 + step)
    g = torch.Generator().manual_seed(augmentation_seed(seed, step))
    return _augment(x, g), _targets(attrs)


def train_evaluator(out: Path, steps: int = 2500, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                    progress: bool = True) -> tuple[AttributeNet, list[float]]:
    """Train the judge on fresh generator images (never on model samples) and save it as safetensors."""
    check_output_path(out, "toy_evaluator.safetensors")
    torch.manual_seed(seed)
    net = AttributeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    glasses = toy.ATTRIBUTES.index("glasses")
    losses = []
    for step in (bar := tqdm(range(steps), desc="train evaluator", disable=not progress)):
        x, y = training_batch(seed, step, batch_size)
        out_ = net(x)
        cont = [i for i in range(y.shape[1]) if i != glasses]
        loss = F.smooth_l1_loss(out_[:, cont], y[:, cont], beta=0.05) + \
            0.2 * F.binary_cross_entropy_with_logits(out_[:, glasses], y[:, glasses])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    net.eval()
    save_safetensors_atomic(net.state_dict(), Path(out), {"attributes": json.dumps(toy.ATTRIBUTES), "seed": seed})
    return net, losses


def load_evaluator(path: Path | None = None) -> "Evaluator":
    """The shipped judge (sha256-checked), ready to read attributes off images."""
    tensors, _ = load_checked(path, TOY_EVALUATOR_FILE, "train-evaluator")
    net = AttributeNet()
    load_weights(net, tensors, path or TOY_EVALUATOR_FILE, "the evaluation network's", "train-evaluator")
    return Evaluator(net.eval().requires_grad_(False))


class Evaluator:
    """Reads toy attributes off images: `evaluator(images)` -> {name: (B,) tensor}; glasses as 0/1."""

    def __init__(self, net: AttributeNet):
        self.net = net

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Attributes of (B, 3, 32, 32) images in [-1, 1]."""
        check_images(images, size=toy.DEFAULT_SIZE)
        weights = next(self.net.parameters())  # the judge's device and dtype (CPU unless moved); readings come back
        out = torch.cat([self.net(images[i:i + batch_size].to(weights)).to(images.device)  # on the images' device
                         for i in range(0, len(images), batch_size)]).float()
        attrs = {k: out[:, i] for i, k in enumerate(toy.ATTRIBUTES)}
        attrs["glasses"] = (attrs["glasses"] > 0).float()
        return attrs


def evaluator_accuracy(evaluator: Evaluator, n: int = 1024, seed: int = 0) -> dict[str, float]:
    """Mean absolute error per continuous attribute and glasses accuracy on fresh held-out generator images."""
    x, attrs = toy.sample(n, seed=seed, heldout=True)
    pred = evaluator(x)
    report = {f"mae_{k}": float((pred[k] - attrs[k]).abs().mean()) for k in toy.CONTINUOUS_ATTRIBUTES}
    report["glasses_accuracy"] = float((pred["glasses"] == attrs["glasses"]).float().mean())
    return report
