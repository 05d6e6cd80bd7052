"""The `asyrp-edu` commands that train and measure editors: train, evaluate, hspace."""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (counts of images, steps, epochs)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def step_count(text: str) -> int:
    """An argparse type: DDIM steps, 1 … 1000 (a grid cannot have more steps than the schedule's T = 1000)."""
    value = positive_int(text)
    if value > 1000:
        raise argparse.ArgumentTypeError(f"must be at most 1000, the toy and real models' T, got {text}")
    return value


def seed_value(text: str) -> int:
    """An argparse type: a seed of 0 … 2**32 − 1 (the trainers derive per-step seeds from it, e.g. seed · 1,000,003 +
    step, which must fit torch's 64-bit seed; `toy.generator_seed` then puts each in its stream's 32-bit range)."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**32 - 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (learning rates)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (loss weights, where 0 turns a term off)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (0 turns it off), got {text}")
    return value


def editor_config_from_args(args: argparse.Namespace):
    """The EditorConfig that `asyrp-edu train` would use for these parsed arguments (prompts checked first)."""
    from .ddim import INVERSION_FIXED_POINT_ITERS
    from .evaluate_edits import TOY_EDITS, check_edit_name
    from .tiny_clip import keep_prompt_pairs
    from .train_asyrp import EditorConfig

    source, target = args.source, args.target
    if args.edit and (source or target):
        raise SystemExit("--edit sets the prompts of a named edit; drop --source/--target, or drop --edit")
    if args.edit:
        spec = check_edit_name(args.edit)  # an unknown name: the error lists the known ones
        source, target = spec["source"], spec["target"]
    if not (source and target):
        raise SystemExit(f"give --edit NAME ({', '.join(sorted(TOY_EDITS))}) or both --source and --target")
    if args.lambda_keep is not None and not args.keep:
        raise SystemExit("--lambda-keep weighs the keep loss, which needs --keep ATTRIBUTE ...; add --keep or drop it")
    try:
        keep = keep_prompt_pairs(args.keep or [], TOY_EDITS[args.edit]["attribute"] if args.edit else None)
    except ValueError as error:
        raise SystemExit(f"--keep: {error}") from None
    return EditorConfig(source=source, target=target, t_edit=args.t_edit, num_steps=args.steps,
                        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        lambda_recon=args.lambda_recon, loss_kind=args.loss, reference=args.reference,
                        seed=args.seed,
                        keep=keep, lambda_keep=(1.0 if args.lambda_keep is None else args.lambda_keep) if keep
                        else 0.0,
                        ignore_timesteps=args.ignore_timesteps,
                        inversion_iters=(INVERSION_FIXED_POINT_ITERS if args.world == "toy" else 0)
                        if args.inversion_iters is None else args.inversion_iters)


def _cmd_train(args: argparse.Namespace) -> None:
    """`asyrp-edu train`: one f_t for a named toy edit or two prompts, on the toy world's DDPM or the toy LDM."""

    from . import toy
    from .checks import check_output_path
    from .parallel import local_device
    from .settings import checked_device
    from .tiny_clip import load_tiny_clip
    from .train_asyrp import train_editor

    config = editor_config_from_args(args)  # before the models load: bad arguments fail at once
    out = Path(args.out or _editor_folder(args.world, args.edit or _folder_name(config.target)))
    check_output_path(out, folder=True)  # a folder for the editor and its checkpoints
    unet, schedule, codec = _toy_models(args.world, args.ddpm)
    device = local_device() if args.device == "auto" else checked_device(args.device)
    unet.to(device)
    if codec is not None:
        codec.to(device)
    images, _ = toy.sample(args.n_images, seed=args.seed)  # the training seed stream; evaluation uses held-out
    result = train_editor(unet, schedule, load_tiny_clip(device=device), images.to(device), config, out,
                          resume=not args.no_resume, codec=codec)
    print(f"editor: {result.weights}")


def _folder_name(prompt: str) -> str:
    """A prompt as a folder name: letters, digits, "-" and "_" only, at most 60 characters ('a smiling face' ->
    'a_smiling_face'), so that no prompt can point outside runs/."""
    name = re.sub(r"[^\w-]+", "_", prompt).strip("_")[:60]
    return name or "editor"


def _editor_folder(world: str, name: str) -> str:
    """Where `asyrp-edu train` puts an editor by default: runs/editors/NAME (toy) or runs/ldm_editors/NAME."""
    return f"runs/{'editors' if world == 'toy' else 'ldm_editors'}/{name}"


def _toy_models(world: str, ddpm: str | None = None):
    """(unet, schedule, codec) of a toy world: 'toy' (pixels, codec None; the DDPM file `ddpm` instead of the shipped
    one if given) or 'toy-ldm' (latents)."""
    if ddpm is not None and world != "toy":
        raise SystemExit(f"--ddpm replaces the pixel DDPM of --world toy; --world {world} has its own models")
    if world == "toy":
        from .models import load_toy_ddpm

        return (*load_toy_ddpm(None if ddpm is None else Path(ddpm)), None)
    if world == "toy-ldm":
        from .ldm import load_toy_ldm

        ldm = load_toy_ldm()
        return ldm.unet, ldm.schedule, ldm.codec
    raise SystemExit(f"--world {world!r} is not available here: use --world toy or --world toy-ldm "
                     "(real models: the notebooks' WORLD switch on a GPU)")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    """`asyrp-edu evaluate`: an editor judged against ground truth on held-out toy faces (README, toy editing)."""
    import json

    from . import toy
    from .editing import Intervals, ScaledEditor, step_scale
    from .evaluate_edits import check_edit_name, evaluate_editor
    from .evaluator import load_evaluator
    from .models import WEIGHTS_DIR
    from .settings import cache_dir
    from .tiny_clip import load_tiny_clip
    from .inversion_cache import cached_inversion
    from .train_asyrp import EDITOR_FILE, load_editor, shipped_editor_file

    if args.world not in ("toy", "toy-ldm"):
        raise SystemExit("evaluate measures edits against ground truth, which only the toy worlds have: "
                         "--world toy or --world toy-ldm")
    check_edit_name(args.attribute)
    unet, schedule, codec = _toy_models(args.world, args.ddpm)
    if args.editor:
        path = Path(args.editor)
        path = path / EDITOR_FILE if path.is_dir() else path
        if not path.is_file():
            raise SystemExit(f"no editor at {path}; train one with "
                             f"`asyrp-edu train --world {args.world} --edit {args.attribute} --out {args.editor}`")
        editor, config = load_editor(unet, path)
    elif (WEIGHTS_DIR / shipped_editor_file(args.attribute, args.world)).is_file():
        editor, config = load_editor(unet, edit=args.attribute, world=args.world)
    else:
        raise SystemExit(f"no shipped editor for {args.attribute!r} in {args.world}; train one with "
                         f"`asyrp-edu train --world {args.world} --edit {args.attribute}` and pass --editor "
                         f"{_editor_folder(args.world, args.attribute)}")
    steps = config.num_steps if args.steps is None else args.steps
    if steps != config.num_steps:  # the paper's Δh × n_train/n_test for another number of steps
        editor = ScaledEditor(editor, step_scale(config.num_steps, steps))
    intervals = Intervals(config.t_edit if args.t_edit is None else args.t_edit, T=schedule.T)
    first = schedule.timesteps(steps)[0]
    if intervals.t_edit > first:  # checked before the inversion: nothing would be edited, every number 0
        raise SystemExit(f"--t-edit {intervals.t_edit} lies above the first of the {steps} DDIM steps (t = {first}), "
                         f"so nothing would be edited; use --t-edit <= {first} or more --steps")
    expected = check_edit_name(args.attribute)["target"]
    if config.target != expected:
        print(f"note: this editor was trained towards {config.target!r}, not {expected!r}; judging it on "
              f"{args.attribute} anyway", file=sys.stderr)
    originals, _ = toy.sample(args.n, seed=args.seed, heldout=True)
    x_T = cached_inversion(unet, schedule, originals, steps, cache_dir(), progress=not args.json, codec=codec,
                           fixed_point_iters=config.inversion_iters)
    report = evaluate_editor(unet, schedule, editor, load_evaluator(), load_tiny_clip(), args.attribute, x_T,
                             originals, intervals, steps,
                             codec=codec, progress=not args.json)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)


def _cmd_hspace(args: argparse.Namespace) -> None:
    """`asyrp-edu hspace`: linearity, homogeneity and combinations of the shipped toy editors, as JSON."""
    import json

    from .properties import hspace_report

    print(json.dumps(hspace_report(n=args.n, num_steps=args.steps, seed=args.seed), indent=2))


def add_editor_parsers(sub) -> None:
    """Register `train`, `evaluate` and `hspace` on the `asyrp-edu` sub-command parsers."""
    p = sub.add_parser("train", help="train an Asyrp editor f_t with the directional CLIP loss")
    p.add_argument("--world", default="toy")
    p.add_argument("--ddpm", help="--world toy: a DDPM file from `asyrp-edu train-ddpm` (or a script) to edit instead "
                   "of the shipped one")
    p.add_argument("--edit", help="a named toy edit (smiling, glasses, tanned, blonde, alien)")
    p.add_argument("--source")
    p.add_argument("--target")
    p.add_argument("--t-edit", type=int, default=400)
    p.add_argument("--steps", type=step_count, default=40, help="DDIM steps for inversion and generation")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--n-images", type=positive_int, default=64)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=5e-4,
                   help="Adam learning rate of f_t (the shipped toy editors: 1e-3 with the keep loss, alien 5e-4)")
    p.add_argument("--lambda-recon", type=float, help="weight of |P_t^edit − P_t^source| (default 3·cos of the texts)")
    # the choices are train_asyrp.LOSS_KINDS and train_asyrp.REFERENCES, spelled out so that building the parser
    # does not import torch (tests/test_cli_edits.py holds them equal)
    p.add_argument("--loss", choices=("cosine", "log"), default="cosine",
                   help="the directional CLIP loss: the paper's 1 − cos(ΔI, ΔT) (default) or the authors' code's "
                        "−log((1 + cos)/2)")
    p.add_argument("--reference", choices=("trajectory", "x0-both", "x0", "P_t"), default="trajectory",
                   help="what P_t^edit is compared with: x0 in the CLIP loss and the unedited trajectory's P_t at "
                        "the same t in the L1 loss (the authors' code, default); x0 in both; x0 in the CLIP loss and "
                        "the unedited P_t of the same step in the L1 loss; or the unedited P_t in both")
    p.add_argument("--keep", nargs="+", metavar="ATTRIBUTE",
                   help="attributes the edit should leave alone, for the keep loss: names (mouth, glasses, hair_color, "
                        "skin_tone, eye_size), 'others' (all but the edited one), or prompt pairs 'SOURCE|TARGET'")
    p.add_argument("--lambda-keep", type=non_negative_float,
                   help="weight of the keep loss (needs --keep; default 1)")
    p.add_argument("--ignore-timesteps", action="store_true",
                   help="f_t(h_t) without the time embedding (the authors' --ignore_timesteps)")
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--out")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, or auto (cuda:LOCAL_RANK per process under `accelerate launch`, else the CPU)")
    p.add_argument("--inversion-iters", type=non_negative_int,
                   help="fixed-point iterations per DDIM inversion step of the training "
                   "images (default: 2 for --world toy, 0 = plain DDIM inversion for toy-ldm)")
    p.add_argument("--no-resume", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="measure a toy editor against ground truth (evaluation network as judge)")
    p.add_argument("--world", default="toy")
    p.add_argument("--ddpm", help="--world toy: the DDPM file the editor was trained on, if not the shipped one")
    p.add_argument("--attribute", required=True, help="the toy edit: smiling, glasses, tanned, blonde or alien")
    p.add_argument("--editor", help="an editor file or a folder holding editor.safetensors (default: the shipped one)")
    p.add_argument("--n", type=positive_int, default=64)
    p.add_argument("--steps", type=step_count, help="DDIM steps (default: as the editor was trained)")
    p.add_argument("--t-edit", type=int, help="end of the editing interval (default: as the editor was trained)")
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("hspace", help="measure linearity, homogeneity and combinations of the shipped toy editors")
    p.add_argument("--n", type=positive_int, default=64, help="held-out faces")
    p.add_argument("--steps", type=step_count, default=40)
    p.add_argument("--seed", type=seed_value, default=0)
    p.set_defaults(func=_cmd_hspace)
