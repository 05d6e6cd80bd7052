"""The `asyrp-edu` command line: demo, training of the shipped toy models."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path


def _cmd_train_ddpm(args: argparse.Namespace) -> None:
    from .checks import check_output_path
    from .settings import checked_device
    from .train_ddpm import train_ddpm

    if args.world not in ("toy", "toy-ldm"):
        raise SystemExit(f"train-ddpm supports --world toy and --world toy-ldm (got {args.world!r}); "
                         "real models come pretrained")
    if args.autoencoder and args.world != "toy-ldm":
        raise SystemExit("--autoencoder encodes the latents of --world toy-ldm; the pixel DDPM has none")
    out = Path(args.out or ("runs/toy_ldm" if args.world == "toy-ldm" else "runs/toy_ddpm"))
    check_output_path(out, folder=True)
    options = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, resume=not args.no_resume,
                   bf16=args.precision, device=str(checked_device(args.device)),
                   coarse_weight=args.coarse_weight if args.coarse_weight is not None else
                   (1.0 if args.world == "toy" else 0.05))
    if args.world == "toy-ldm":
        from .autoencoder import load_toy_autoencoder
        from .ldm import train_toy_ldm

        codec = load_toy_autoencoder(args.autoencoder) if args.autoencoder else None  # None: the shipped one
        result = train_toy_ldm(out, codec, autoencoder_file=args.autoencoder, **options)
    else:
        result = train_ddpm(out, **options)
    print(f"EMA weights after {result.step} steps: {result.weights}")


def _cmd_train_vae(args: argparse.Namespace) -> None:
    from .autoencoder import autoencoder_mse, load_toy_autoencoder, train_autoencoder
    from .checks import check_output_path

    check_output_path(args.out, folder=True)
    result = train_autoencoder(Path(args.out), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               seed=args.seed, resume=not args.no_resume)
    print(f"weights after {result.step} steps: {result.weights}; held-out reconstruction MSE "
          f"{autoencoder_mse(load_toy_autoencoder(result.weights)):.5f}")


def _cmd_train_evaluator(args: argparse.Namespace) -> None:
    from .evaluator import Evaluator, evaluator_accuracy, train_evaluator

    net, _ = train_evaluator(Path(args.out), steps=args.steps, seed=args.seed)
    print(f"saved {args.out}; held-out accuracy: {evaluator_accuracy(Evaluator(net))}")


def _cmd_demo(args: argparse.Namespace) -> None:
    """`asyrp-edu demo`: the shipped toy models' figure, written to a PNG."""
    import matplotlib

    from .demo import run_demo

    from .checks import check_output_path
    from .viz import figure_format

    out = Path(args.out)
    if out.is_dir():  # checked before the work, not after it
        raise SystemExit(f"--out {out} is a folder; give the PNG's file name, e.g. {out / 'asyrp_edu_demo.png'}")
    figure_format(out)
    check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.use("Agg")  # a terminal: draw to a file, no window
    run_demo(out, seed=args.seed)


def _cmd_measure(args: argparse.Namespace) -> None:
    import json

    from .ddim import INVERSION_FIXED_POINT_ITERS
    from .evaluator import evaluator_accuracy, load_evaluator
    from .quality import reconstruction_mse, sample_marginals

    given = [flag for flag, value in (("--heldout", args.heldout), ("--inversion-steps", args.inversion_steps))
             if value is not None]
    if args.world == "toy-ldm" and given:  # refused, not ignored: the numbers would not be what was asked for
        raise SystemExit(f"{' and '.join(given)} set the pixel DDPM's inversion check; --world toy-ldm measures its "
                         "autoencoder on 256 held-out faces instead: drop them")
    heldout = 64 if args.heldout is None else args.heldout
    inversion_steps = 40 if args.inversion_steps is None else args.inversion_steps
    judge = load_evaluator(args.evaluator)
    if args.world == "toy-ldm":
        from .autoencoder import autoencoder_mse
        from .ldm import load_toy_ldm

        ldm = load_toy_ldm(args.ddpm)
        report = {"autoencoder_mse": autoencoder_mse(ldm.codec, n=256),
                  "sample_marginals": sample_marginals(ldm.unet, ldm.schedule, judge, n=args.samples,
                                                       num_steps=args.sample_steps, codec=ldm.codec)}
    else:
        from .models import load_toy_ddpm

        unet, schedule = load_toy_ddpm(args.ddpm)
        report = {
            "evaluator_on_generator_images": evaluator_accuracy(judge, n=1024),
            "sample_marginals": sample_marginals(unet, schedule, judge, n=args.samples, num_steps=args.sample_steps),
            "reconstruction": {"n": heldout, "steps": inversion_steps,
                               "fixed_point_iters": INVERSION_FIXED_POINT_ITERS,
                               "mse": reconstruction_mse(unet, schedule, n=heldout, num_steps=inversion_steps),
                               "mse_plain_ddim_inversion": reconstruction_mse(
                                   unet, schedule, n=heldout, num_steps=inversion_steps, fixed_point_iters=0)},
        }
    report["max_marginal_gap"] = max(v["max_gap"] for v in report["sample_marginals"].values())
    print(json.dumps(report, indent=2))


def _cmd_intervals(args: argparse.Namespace) -> None:
    from . import settings
    from .intervals import DistanceTable, reference_table, t_boost_from_table, t_edit_from_table

    if args.text_cosine is None and not (args.source and args.target):
        raise SystemExit("give --text-cosine, or both --source and --target prompts")
    if args.text_cosine is not None and (args.source or args.target):
        raise SystemExit("--text-cosine replaces the prompts' cosine; give one or the other")
    world_only = [flag for flag, value in (("--n", args.n), ("--stride", args.stride), ("--cache-dir", args.cache_dir),
                                           ("--along", args.along)) if value is not None]
    if world_only and not args.world:  # refused, not ignored: they only shape the tables --world measures
        raise SystemExit(f"{', '.join(world_only)} set how --world measures its own tables; give --world too")
    if args.cache_dir:
        from .checks import check_output_path

        check_output_path(args.cache_dir, folder=True)
    if args.world and (args.edit_table or args.boost_table):
        raise SystemExit("--world measures its own tables; drop --edit-table/--boost-table, or drop --world")
    world = None
    if args.world:  # measure the model's own tables (progress bar), cached in --cache-dir for the next call
        from .world import OWN_TABLES_N, OWN_TABLES_STRIDE, load_world

        with warnings.catch_warnings():  # the warning says to measure, which is what this command does
            warnings.simplefilter("ignore", UserWarning)
            # (a given text cosine needs no CLIP, so none is loaded: offline, its weights may be missing)
            world = load_world(args.world, **({"clip": None} if args.text_cosine is not None else {}))
        cache_dir = settings.cache_dir(args.cache_dir)
        n = OWN_TABLES_N if args.n is None else args.n  # the defaults are the ones load_world finds tables for
        stride = OWN_TABLES_STRIDE if args.stride is None else args.stride
        along = "noised" if args.along is None else args.along
        edit, boost = world.measure_tables(n=n, stride=stride, cache_dir=cache_dir, along=along)
        print(f"{world.name}: distance tables on {n} images, every {stride}th t, x_t "
              f"{'along the DDIM inversion' if along == 'inversion' else 'noised afresh'} (cached in "
              f"{cache_dir})")
    else:
        edit = DistanceTable.read(args.edit_table) if args.edit_table else reference_table(args.dataset, "x0_t")
        boost = DistanceTable.read(args.boost_table) if args.boost_table else reference_table(args.dataset, "x")
    if args.text_cosine is None:
        from .losses import text_direction
        from .tiny_clip import load_tiny_clip

        clip = world.clip if world is not None else load_tiny_clip()
        _, cosine = text_direction(clip.encode_text, args.source, args.target)
    else:
        cosine = args.text_cosine
    t_edit, t_boost = t_edit_from_table(edit, cosine), t_boost_from_table(boost)
    print(f"text cosine {cosine:.3f}: t_edit = {t_edit}, t_boost = {t_boost}")
    if t_boost > t_edit:
        print(f"t_boost > t_edit: the two rules cross, so boosting starts where editing ends: use t_boost = {t_edit}")


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands and their options."""
    from .cli_editors import (add_editor_parsers, non_negative_float, positive_float, positive_int, seed_value,
                              step_count)

    parser = argparse.ArgumentParser(prog="asyrp-edu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="load the shipped toy models and write a figure of real results")
    p.add_argument("--out", default="asyrp_edu_demo.png")
    p.add_argument("--seed", type=seed_value, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("measure", help="measure the toy DDPM: sample attribute marginals, reconstruction error")
    p.add_argument("--world", default="toy", choices=("toy", "toy-ldm"))
    p.add_argument("--ddpm", default=None, help="a toy_ddpm (or toy_ldm) .safetensors to measure instead of the "
                                                "shipped one")
    p.add_argument("--evaluator", default=None, help="a judge to use instead of the shipped one")
    p.add_argument("--samples", type=positive_int, default=512)
    p.add_argument("--sample-steps", type=step_count, default=50)
    p.add_argument("--heldout", type=positive_int, help="--world toy only: faces to invert (default 64)")
    p.add_argument("--inversion-steps", type=step_count, help="--world toy only (default 40)")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("intervals", help="t_edit (LPIPS editing strength) and t_boost (quality deficiency)")
    p.add_argument("--dataset", default="celeba", choices=["celeba", "afhq", "bedroom", "church"],
                   help="which of the authors' LPIPS tables to use")
    p.add_argument("--edit-table", help="a TSV of t and distance(x0, P_t) instead of the authors' table")
    p.add_argument("--boost-table", help="a TSV of t and distance(x0, x_t) instead of the authors' table")
    p.add_argument("--text-cosine", type=float, help="cos(E_T(source), E_T(target)); or give the two prompts")
    p.add_argument("--source")
    p.add_argument("--target")
    p.add_argument("--world", help="measure this model's own tables instead: toy (the toy distance), a real world "
                                   "name or model folder (LPIPS on the model's samples)")
    p.add_argument("--n", type=positive_int, help="--world: images to measure on (default 16, the number "
                                                  "load_world looks for)")
    p.add_argument("--stride", type=positive_int, help="--world: measure every stride-th t (default 10)")
    # the choices are intervals.ALONG, spelled out so that building the parser does not import torch
    p.add_argument("--along", choices=("noised", "inversion"),
                   help="--world: x_t noised afresh for every t (default), or along each image's DDIM inversion "
                        "(how the authors measured their tables)")
    p.add_argument("--cache-dir", default=None,
                   help="--world: where measured tables are kept (default: $ASYRP_EDU_CACHE or ~/.cache/asyrp_edu)")
    p.set_defaults(func=_cmd_intervals)

    p = sub.add_parser("train-ddpm", help="train the toy DDPM (resumable; EMA weights as safetensors)")
    p.add_argument("--world", default="toy")
    p.add_argument("--out", help="folder for train_state.pt and the weights (default runs/toy_ddpm or runs/toy_ldm)")
    p.add_argument("--autoencoder", help="toy-ldm: a toy_vae.safetensors to encode with (default: the shipped one)")
    p.add_argument("--steps", type=positive_int, default=8000)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=4e-4)
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--device", default="cpu")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp32", dest="precision", action="store_const", const=False,
                           help="train in float32 (default where bfloat16 autocast would be slow: "
                                "a CPU without bf16 kernels, e.g. AVX2 only)")
    precision.add_argument("--bf16", dest="precision", action="store_const", const=True,
                           help="train in bfloat16 autocast (default on a GPU with bf16 and a CPU with AVX512 "
                                "or AMX)")
    p.add_argument("--coarse-weight", type=non_negative_float,
                   help="weight of the coarse P_t loss that keeps sample colours right (0 = plain L_simple; "
                        "default 1.0 for toy, 0.05 for toy-ldm)")
    p.add_argument("--no-resume", action="store_true", help="start over even if train_state.pt exists")
    p.set_defaults(func=_cmd_train_ddpm)

    p = sub.add_parser("train-vae", help="train the toy LDM's autoencoder (AutoencoderKL, 32² -> 16² × 4)")
    p.add_argument("--out", default="runs/toy_vae")
    p.add_argument("--steps", type=positive_int, default=3000)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--no-resume", action="store_true", help="start over even if vae_state.pt exists")
    p.set_defaults(func=_cmd_train_vae)

    p = sub.add_parser("train-evaluator", help="train the toy attribute judge on generator ground truth")
    p.add_argument("--out", default="runs/toy_evaluator.safetensors")
    p.add_argument("--steps", type=positive_int, default=2500)
    p.add_argument("--seed", type=seed_value, default=0)
    p.set_defaults(func=_cmd_train_evaluator)
    from .tiny_clip_training import add_train_clip_parser

    add_editor_parsers(sub)
    add_train_clip_parser(sub)
    return parser


# Errors that mean "this input cannot work": their messages name the fix, so the command prints the message alone
# (ASYRP_EDU_TRACEBACK=1 shows the traceback as well). WeightsUnavailable is a RuntimeError, matched by name below.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, FloatingPointError)
RESUMABLE = ("train", "train-ddpm", "train-vae")  # commands that go on from their saved state when run again


def _show_traceback() -> bool:
    """ASYRP_EDU_TRACEBACK set to anything but '' or '0'."""
    return os.environ.get("ASYRP_EDU_TRACEBACK", "0") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `asyrp-edu` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        if _show_traceback():
            raise
        resumes = "; run the same command again to go on where it stopped" if args.command in RESUMABLE else ""
        print(f"asyrp-edu {args.command}: interrupted{resumes}", file=sys.stderr)
        return 130
    except SystemExit as stop:
        if isinstance(stop.code, str):  # a command refusing its input: one line in the same form as the others
            raise SystemExit(f"asyrp-edu {args.command}: error: {stop.code}") from None
        raise
    except Exception as error:
        if _show_traceback() or not (isinstance(error, USER_ERRORS) or type(error).__name__ == "WeightsUnavailable"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        raise SystemExit(f"asyrp-edu {args.command}: error: {message}\n"
                         f"(ASYRP_EDU_TRACEBACK=1 shows where it came from)") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
