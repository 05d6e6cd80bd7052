"""Train f_t: inversions cached on disk, batched over images, checkpoints written atomically, resumable."""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from tqdm.auto import tqdm

from .checks import check_resumable, load_training_state
from .ddim import Schedule, ddim_step, predict_x0
from .delta_block import DeltaBlock, check_compatible
from .hspace import asymmetric_eps, asymmetric_step, h_shape, temb_dim
from .inversion_cache import (cached_inversion, schedule_fingerprint,  # noqa: F401 (also imported from here)
                              unet_fingerprint)
from .intervals import check_intervals
from .losses import asyrp_loss, check_prompts, default_lambda_recon, text_direction
from .models import load_checked, save_safetensors_atomic, save_torch_atomic
from .parallel import process_group

if TYPE_CHECKING:
    from .autoencoder import LatentCodec

STATE_FILE = "editor_state.pt"
EDITOR_FILE = "editor.safetensors"
REFERENCES = ("trajectory", "x0-both", "x0", "P_t")  # what P_t^edit is compared with (EditorConfig.reference)
RENAMED_REFERENCES = {"authors": "x0-both"}  # old names, as editors and runs saved before the rename record them
LOSS_KINDS = ("cosine", "log")  # the paper's 1 − cos(ΔI, ΔT), or the authors' −log((1 + cos)/2)


@dataclass
class EditorConfig:
    """Everything that defines one editor's training run (saved next to the weights)."""

    source: str
    target: str
    t_edit: int = 500
    num_steps: int = 40  # DDIM steps for inversion and generation (the authors' n_inv = n_gen = 40)
    lambda_recon: float | None = None  # None: the paper's 3 · cos(E_T(source), E_T(target))
    lambda_clip: float = 1.0
    loss_kind: str = "cosine"
    # What P_t^edit is compared with: "trajectory" (the authors' code: ΔI against the original image x0, the L1
    # term against P_t of the unedited DDIM trajectory from the same x_T at the same t), "x0-both" (ΔI and L1 against
    # x0), "x0" (ΔI against x0, L1 against the unedited P_t of the same step) or "P_t" (both against the unedited
    # P_t of the same step: the paper's formula, but cos(ΔI, ΔT) ignores the size of ΔI, so edits stay tiny; see
    # README "Editing")
    reference: str = "trajectory"
    templates: tuple[str, ...] = ("{}",)
    lr: float = 2e-3
    epochs: int = 1
    batch_size: int = 16
    seed: int = 0
    # fixed-point iterations of the DDIM inversion its training images went through (0: plain, as the authors
    # invert); apply the editor to images inverted the same way: it learns the x_T it is trained on
    inversion_iters: int = 0
    # (source, target) prompt pairs of attributes the edit should leave alone, and the weight of
    # L_keep = mean_k cos(E_I(P_t^edit) − E_I(P_t^unedited), ΔT_k)²  (losses.keep_loss; 0: the paper's loss)
    keep: tuple[tuple[str, str], ...] = ()
    lambda_keep: float = 0.0
    # the authors' --ignore_timesteps: f_t(h_t) without the time embedding (README, "consistency across timesteps")
    ignore_timesteps: bool = False

    def __post_init__(self) -> None:
        check_prompts(self.source, self.target)
        check_intervals(self.t_edit, 0)
        if self.loss_kind not in LOSS_KINDS:
            raise ValueError(f"loss_kind must be one of {', '.join(map(repr, LOSS_KINDS))}, got {self.loss_kind!r}")
        for name in ("num_steps", "batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0 (e.g. 2e-3), got {self.lr}")
        for name in ("lambda_recon", "lambda_clip", "lambda_keep"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}"
                                 + (" (leave it unset for the paper's 3·cos of the texts)" if name == "lambda_recon"
                                    else ""))
        self.keep = tuple((str(a), str(b)) for a, b in self.keep)  # JSON gives lists
        for a, b in self.keep:
            check_prompts(a, b)
        if self.reference in RENAMED_REFERENCES:
            raise ValueError(f"reference {self.reference!r} is now called {RENAMED_REFERENCES[self.reference]!r} (ΔI "
                             "and L1 against x0); the authors' code is 'trajectory', the default")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(map(repr, REFERENCES))}, got {self.reference!r}")


def shared_inversion_iters(configs) -> int:
    """The `inversion_iters` that editors steered or measured together share (0 for none), or a ValueError."""
    iters = {config.inversion_iters for config in configs}
    if len(iters) > 1:
        raise ValueError(f"these editors were trained on differently inverted images (fixed-point iterations {iters}); "
                         "steer or measure editors of one kind together")
    return iters.pop() if iters else 0


def new_editor(unet, ignore_timesteps: bool = False) -> DeltaBlock:
    """A fresh f_t for this model's h (conv2 starts at zero, so Δh_t = 0 before training)."""
    return DeltaBlock(h_shape(unet)[0], temb_dim(unet), ignore_timesteps=ignore_timesteps)


@dataclass
class EditorTrainResult:
    """The trained f_t, where it was saved, and the per-update training curves."""

    editor: torch.nn.Module
    weights: Path
    losses: list[float] = field(default_factory=list)
    s_dir: list[float] = field(default_factory=list)


def train_editor(unet, schedule: Schedule, clip, images: torch.Tensor, config: EditorConfig, out_dir: Path,
                 resume: bool = True, progress: bool = True, editor: torch.nn.Module | None = None,
                 on_step: Callable[[EditorTrainResult], None] | None = None,
                 codec: LatentCodec | None = None) -> EditorTrainResult:
    """Train f_t (or any Δh module, e.g. a ConstantDeltaH) so that P_t moves along ΔT; one update per batch and
    edited timestep, as the authors do. on_step(result) runs after every update (e.g. to redraw a live loss plot).

    codec: for a latent diffusion model. images stay pixels; the U-Net runs on z0 = codec.encode(images), and both
    losses see the decoded P_t = codec.decode(P_t^latent), with gradients through the decoder."""
    out_dir = Path(out_dir)
    torch.manual_seed(config.seed)
    grid = schedule.timesteps(config.num_steps)  # descending
    timesteps = [t for t in grid if t >= config.t_edit]  # the editing interval [T, t_edit]
    if not timesteps:  # checked before the inversion, which can take minutes, and before making the folder
        raise ValueError(f"t_edit={config.t_edit} lies above every one of the {config.num_steps} DDIM steps, so "
                         f"nothing would be edited; choose t_edit <= {grid[0]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    delta_T, text_cos = text_direction(clip.encode_text, config.source, config.target, config.templates)
    lambda_recon = default_lambda_recon(text_cos) if config.lambda_recon is None else config.lambda_recon
    keep_T = [text_direction(clip.encode_text, a, b, config.templates)[0] for a, b in config.keep]
    trainable = [m for m in (unet, codec) if m is not None and any(p.requires_grad for p in m.parameters())]
    if trainable:  # f_t is trained alone: gradients through a trainable U-Net would cost memory and time for nothing
        warnings.warn("train_editor froze the U-Net (and autoencoder): requires_grad_(False); the diffusion model "
                      "stays fixed while f_t learns", stacklevel=2)
        for module in trainable:
            module.requires_grad_(False)
    editor = (new_editor(unet, config.ignore_timesteps) if editor is None else editor).to(images.device)
    # Adam, where the authors' run_training uses plain SGD (lr 0.5, step decay): SGD barely trained the toy editors
    # (README, "Which optimiser")
    optimizer = torch.optim.Adam(editor.parameters(), lr=config.lr)
    done = 0  # batches finished, over all epochs
    state_path = out_dir / STATE_FILE
    # what a resumed run must share with the interrupted one: settings, images and model (more epochs may resume a
    # finished run: it trains on)
    clip_model = getattr(clip, "model", clip)  # TinyClip and load_clip's encoders wrap an open_clip model
    run = {**asdict(config), "n_images": len(images), "unet": unet_fingerprint(unet), "latent": codec is not None,
           "images": hashlib.sha256(images.detach().cpu().float().numpy().tobytes()).hexdigest()[:16],
           "schedule": schedule_fingerprint(schedule),
           "clip": unet_fingerprint(clip_model) if isinstance(clip_model, torch.nn.Module) else None,
           "autoencoder": unet_fingerprint(codec) if codec is not None else None}
    run.pop("epochs")
    # data-parallel over images under `accelerate launch` / torchrun; else a group of one
    group = process_group(images.device)
    if resume and state_path.is_file():
        state = load_training_state(state_path, ("editor", "optimizer", "batches_done"))
        check_same_run(json.loads(state.get("run", "null")), run, state_path)
        editor.load_state_dict(state["editor"])
        optimizer.load_state_dict(state["optimizer"])
        done = int(state["batches_done"])
    if not group.same_everywhere(done, images.device):  # else their loops differ and the gradient exchange hangs
        raise RuntimeError(f"the {group.size} processes resumed from different points ({state_path} is not the same "
                           "file for all of them): give them one --out folder on a shared disk, or pass --no-resume")
    group.broadcast_from_main(editor)  # the same f_t everywhere, also when the caller's was made per process
    batches = [slice(i, i + config.batch_size) for i in range(0, len(images), config.batch_size)]
    own = sorted(i for b in batches for i in group.shard(b, len(images)))  # the images this process edits
    position = {i: k for k, i in enumerate(own)}
    x_T_own = cached_inversion(unet, schedule, images[own], config.num_steps, out_dir / "cache",
                               progress and group.is_main, codec, config.inversion_iters)
    result = EditorTrainResult(editor, out_dir / EDITOR_FILE)
    total = config.epochs * len(batches)
    bar = tqdm(total=total * len(timesteps), initial=done * len(timesteps), desc=f"train f_t: {config.target}",
               disable=not (progress and group.is_main))
    for b in range(done, total):
        batch = batches[b % len(batches)]
        mine = group.shard(batch, len(images))
        share = len(mine) / len(range(len(images))[batch])  # this process's part of the batch
        x = x_T_own[[position[i] for i in mine]]  # (B, C, H, W): start of the edited trajectory
        x_source = x  # the unedited trajectory from the same x_T (used by reference="trajectory")
        x0 = images[mine]  # (B, 3, H, W): the images being edited
        for i, t in enumerate(timesteps):
            t_prev = schedule.previous(grid, i)
            # the decoder twice: on the CPU as one 2B batch (faster there); on a GPU one pass after the other, so the
            # unedited pass, which needs no gradients, keeps no activations for backward (about a third less memory)
            eps, eps_edit, _ = asymmetric_eps(unet, x, t, editor, batched=x.device.type == "cpu")
            a_t = schedule.at(t)
            # P_t^edit = P_t(ε_θ(x_t | Δh_t)),  P_t^source = P_t(ε_θ(x_t))
            P_edit, P_source = predict_x0(x, eps_edit, a_t), predict_x0(x, eps, a_t)
            if config.reference == "trajectory":  # P_t^source from the unedited x_t instead of the edited one
                with torch.no_grad():
                    if i == 0:  # both trajectories start at x_T: ε_θ(x_T) above is the unedited one's own. (A second
                        # pass would differ from it by float noise, and |P_t^edit − P_t^source| at Δh = 0 would turn
                        # that noise into full-size L1 gradients of random sign.)
                        x_source = ddim_step(x, eps, eps, t, t_prev, schedule).prev_sample
                    else:
                        step = asymmetric_step(unet, x_source, t, t_prev, schedule, None)  # no edit: plain DDIM
                        P_source, x_source = step.P_t, step.prev_sample
            if codec is not None:  # the losses compare images: D(P_t), gradients through the frozen decoder
                P_edit = codec.decode(P_edit)  # (B, 3, H, W)
                if config.reference != "x0-both" or keep_T:  # the L1 or keep term compares with an unedited P_t
                    with torch.no_grad():
                        P_source = codec.decode(P_source)
            recon_reference = x0 if config.reference == "x0-both" else P_source.detach()
            clip_reference = x0 if config.reference in ("trajectory", "x0-both", "x0") else None
            parts = asyrp_loss(clip.encode_image, P_edit, recon_reference, delta_T, lambda_recon,
                               config.lambda_clip, config.loss_kind, clip_reference,
                               keep_T, config.lambda_keep, P_source)  # keep: this step's (or the trajectory's) P_t
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            # every process takes the same step: the gradient of the mean loss over the whole batch
            group.average_gradients(editor, share)
            # checked after the all-reduce, so that every process stops together; a finite loss can still have
            # non-finite gradients, and one such step would leave f_t NaN
            if not torch.isfinite(parts["loss"]) or not all(torch.isfinite(p.grad).all()
                                                            for p in editor.parameters() if p.grad is not None):
                raise FloatingPointError(f"the loss or its gradients became non-finite (loss {parts['loss'].item()}) "
                                         f"at batch {b}, timestep t={t}; lower the learning rate (now {config.lr}) "
                                         f"or lambda_clip")
            optimizer.step()
            result.losses.append(parts["loss"].item())
            result.s_dir.append(parts["s_dir"].item())
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss'].item():.3f}", s_dir=f"{parts['s_dir'].item():.2f}")
            if on_step is not None:
                on_step(result)
            # continue along the edited trajectory without gradients: x_{t-1} from the asymmetric step
            with torch.no_grad():
                x = ddim_step(x, eps_edit.detach(), eps.detach(), t, t_prev, schedule).prev_sample
        if group.is_main:
            save_torch_atomic({"editor": editor.state_dict(), "optimizer": optimizer.state_dict(),
                                "batches_done": b + 1, "run": json.dumps(run)}, state_path)
        group.barrier()
    bar.close()
    metadata = {"config": json.dumps(asdict(config)), "lambda_recon": lambda_recon, "text_cosine": text_cos,
                "h_shape": json.dumps(h_shape(unet)), "temb_dim": temb_dim(unet), "latent": codec is not None,
                "unet_fingerprint": run["unet"]}
    if group.is_main:
        save_safetensors_atomic(editor.state_dict(), result.weights, metadata)
    group.barrier()
    return result


def with_current_names(settings: dict) -> dict:
    """Saved settings with an old reference name replaced by today's (RENAMED_REFERENCES)."""
    old = settings.get("reference")
    return {**settings, "reference": RENAMED_REFERENCES[old]} if old in RENAMED_REFERENCES else settings


# settings added after run states began recording them, with the value every older run had
ADDED_SETTINGS = {"ignore_timesteps": False}


def check_same_run(saved: dict | None, current: dict, state_path: Path) -> None:
    """Refuse to resume an interrupted run made with other settings (an old state without them is trusted)."""
    if saved is not None:  # a state from before a setting existed ran with its old behaviour
        saved = {**{k: v for k, v in ADDED_SETTINGS.items() if k in current}, **with_current_names(saved)}
    check_resumable(saved, current, state_path)


def shipped_editor_file(edit: str, world: str = "toy") -> str:
    """File name of a shipped editor inside asyrp_edu/weights/ (world 'toy' or 'toy-ldm')."""
    if world not in ("toy", "toy-ldm"):
        raise ValueError(f"editors ship for the worlds 'toy' and 'toy-ldm', not {world!r}")
    return f"editor_{edit}.safetensors" if world == "toy" else f"ldm_editor_{edit}.safetensors"


def load_editor(unet, path: Path | None = None, edit: str | None = None,
                world: str = "toy") -> tuple[DeltaBlock, EditorConfig]:
    """A trained f_t for this U-Net and the config it was trained with: from path, or the shipped editor `edit` of
    the toy world (world='toy') or of the toy LDM (world='toy-ldm')."""
    if path is None and edit is None:
        raise ValueError("give the editor's file (path=...) or the name of a shipped toy editor (edit='smiling')")
    command = f"train --world {world} --edit {edit or 'NAME'}"
    tensors, metadata = load_checked(Path(path) if path else None, shipped_editor_file(edit or "", world), command)
    if "conv1.weight" not in tensors or "temb_proj.weight" not in tensors:
        raise ValueError(f"{path or edit} is not an f_t checkpoint (no conv1/temb_proj weights); "
                         f"train one with `asyrp-edu {command}`")
    # the shapes the file was made for: conv1 is (C_h, C_h, 1, 1), temb_proj is (C_h, temb_dim)
    stored = DeltaBlock(tensors["conv1.weight"].shape[0], tensors["temb_proj.weight"].shape[1], groups=1)
    check_compatible(stored, h_shape(unet), temb_dim(unet))
    made_for, this_model = metadata.get("unet_fingerprint"), unet_fingerprint(unet)
    if made_for is not None and next(unet.parameters()).dtype in (torch.float16, torch.bfloat16):
        # the fingerprint reads float32 values, which a half-precision copy has lost: it cannot be compared
        warnings.warn(f"this U-Net is in {next(unet.parameters()).dtype}, so whether {path or edit} was trained on "
                      "it cannot be checked; use it with the model it was trained on", stacklevel=2)
        made_for = None
    if made_for is not None and made_for != this_model:
        raise ValueError(f"{path or edit} was trained on another model of the same shape (weights fingerprint "
                         f"{made_for}; this U-Net's is {this_model}): load it with the model it was trained on "
                         f"(`asyrp-edu evaluate --ddpm FILE` for a toy DDPM of your own), or train an editor for "
                         f"this one with `asyrp-edu {command}`")
    if "config" not in metadata:
        raise ValueError(f"{path or edit} holds f_t weights but not the training config this package saves with them "
                         f"(its t_edit and steps); train one with `asyrp-edu {command}`")
    saved = with_current_names(json.loads(metadata["config"]))
    unknown = sorted(set(saved) - {f.name for f in fields(EditorConfig)})
    if unknown:
        raise ValueError(f"{path or edit} was saved by a newer asyrp_edu (its config has {unknown}, which this "
                         f"version does not know); upgrade the package (pip install -U asyrp-edu)")
    config = EditorConfig(**{k: tuple(v) if k == "templates" else v for k, v in saved.items()})
    editor = new_editor(unet, config.ignore_timesteps)
    editor.load_state_dict(tensors)
    # on the U-Net's device and in its dtype: a toy world on a GPU calls it with CUDA tensors, a .half() one with half
    weights = next(unet.parameters())
    return editor.eval().requires_grad_(False).to(weights.device, weights.dtype), config
