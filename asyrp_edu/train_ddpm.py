"""Train the toy DDPM (ε-prediction, EMA) on freshly drawn toy faces; resumable, deterministic from a seed."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import toy
from .checks import check_resumable, load_training_state
from .ddim import Schedule, q_sample
from .models import TOY_DDPM_FILE, TOY_UNET_CONFIG, build_unet, save_safetensors_atomic, save_torch_atomic
from .settings import bf16_autocast_is_fast

STATE_FILE = "train_state.pt"


@dataclass
class DDPMTrainResult:
    """Where the EMA weights went and the loss of every step run in this call."""

    weights: Path
    losses: list[float] = field(default_factory=list)
    step: int = 0


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """θ_ema ← decay · θ_ema + (1 − decay) · θ."""
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1.0 - decay)


def coarse_x0_loss(eps_pred: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor,
                   cell: int = 8, max_weight: float = 1000.0) -> torch.Tensor:
    """Squared error of the coarse (cell-averaged) P_t, weighted (1 − ᾱ)/ᾱ and capped: fixes sample colour drift.

    L_simple weighs every pixel of ε alike, so an error shared by a whole region — the background colour of P_t — costs
    almost nothing although P_t − x0 = sqrt(1 − ᾱ)/sqrt(ᾱ)·(ε − ε̂) magnifies it ~150× at t ≈ T. Any positive weight
    keeps E[ε | x_t] the minimiser; this one only makes the network learn the coarse part as carefully as the fine.
    """
    # (B, 3, H/cell, W/cell): the region means of ε̂ − ε
    coarse = F.avg_pool2d(eps_pred - eps, cell)
    # ‖coarse(P̂_t − x0)‖² = (1 − ᾱ)/ᾱ · ‖coarse(ε − ε̂)‖², the weight capped so t ≈ T does not swamp the rest
    weight = ((1 - alpha_bar_t) / alpha_bar_t).clamp(max=max_weight)  # (B,)
    return (weight[:, None, None, None] * coarse.pow(2)).mean()


def train_ddpm(
    out_dir: Path,
    steps: int = 8000,
    batch_size: int = 32,
    lr: float = 4e-4,
    ema_decay: float = 0.999,
    seed: int = 0,
    checkpoint_every: int = 500,
    resume: bool = True,
    config: dict | None = None,
    device: str = "cpu",
    bf16: bool | None = None,
    coarse_weight: float = 1.0,
    progress: bool = True,
    draw: Callable[[int, int], torch.Tensor] | None = None,
    weights_file: str = TOY_DDPM_FILE,
    metadata: dict | None = None,
    coarse_cell: int = 8,
) -> DDPMTrainResult:
    """Train (or resume) the toy DDPM in out_dir; writes train_state.pt and the EMA weights as safetensors.

    draw(batch_size, seed) gives the training batch x0 (default: toy faces; the toy LDM passes their latents).
    bf16: bfloat16 autocast (True), float32 (False), or None: autocast where this device runs it fast
    (`settings.bf16_autocast_is_fast`), since on a CPU without bf16 kernels it is over ten times slower.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps={steps} and batch_size={batch_size} must both be >= 1")
    if bf16 is None:
        bf16 = bf16_autocast_is_fast(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config or TOY_UNET_CONFIG)
    schedule = Schedule.linear()

    torch.manual_seed(seed)
    model = build_unet(config).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    state_path = out_dir / STATE_FILE
    # what a resumed run must share with the interrupted one (more steps may resume a finished run: it trains on)
    run = {"config": config, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay, "seed": seed,
           "coarse_weight": coarse_weight, "coarse_cell": coarse_cell, "weights_file": weights_file,
           **(metadata or {})}
    if resume and state_path.is_file():
        state = load_training_state(state_path, ("model", "ema", "optimizer", "step"), device)
        check_resumable(json.loads(state.get("run", "null")), run, state_path,
                        fixed=("config", "weights_file", "autoencoder", "autoencoder_sha256"))
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])

    def lr_at(step: int) -> float:
        """Linear warm-up over 200 steps, then cosine decay to 10% of lr."""
        warm = min(1.0, (step + 1) / 200)
        return lr * warm * (0.55 + 0.45 * math.cos(math.pi * min(step / steps, 1.0)))

    result = DDPMTrainResult(weights=out_dir / weights_file, step=start)
    draw = draw or (lambda n, s: toy.sample(n, seed=s)[0])
    model.train()
    bar = tqdm(range(start, steps), desc="train toy DDPM", disable=not progress, initial=start, total=steps)
    for step in bar:
        # Every step draws its own images, timesteps and noise from (seed, step): resuming replays the same run.
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x0 = draw(batch_size, seed * 1_000_003 + step)  # (B, 3, 32, 32) faces, or (B, 4, 16, 16) latents
        t = torch.randint(0, schedule.T, (batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        x0, t, eps = x0.to(device), t.to(device), eps.to(device)
        x_t = q_sample(x0, t, eps, schedule)  # the shape of x0
        # L_simple = ‖ε − ε_θ(x_t, t)‖²
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            eps_pred = model(x_t, t).sample
        loss = F.mse_loss(eps_pred.float(), eps)
        if coarse_weight > 0:
            alpha_bar_t = schedule.alpha_bar[t.cpu()].float().to(device)
            loss = loss + coarse_weight * coarse_x0_loss(eps_pred.float(), eps, alpha_bar_t, cell=coarse_cell)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate (--lr)")
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        result.losses.append(loss.item())
        result.step = step + 1
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            save_torch_atomic({"model": model.state_dict(), "ema": ema.state_dict(),
                                "optimizer": optimizer.state_dict(), "step": step + 1, "run": json.dumps(run)},
                               state_path)
    export_ema(ema, result.weights, config, seed=seed, steps=result.step, **(metadata or {}))
    return result


def export_ema(ema: torch.nn.Module, path: Path, config: dict, **info) -> str:
    """Save EMA weights as safetensors with the U-Net config and schedule in the metadata; returns sha256."""
    metadata = {"unet_config": json.dumps(config), "num_train_timesteps": 1000, "beta_start": 1e-4,
                "beta_end": 0.02, "prediction_type": "epsilon", **info}
    return save_safetensors_atomic(ema.state_dict(), path, metadata)
