"""Where the T4 run-time estimates of notebooks 02 to 06 come from: U-Net work counted, not timed on a GPU.

1. FLOPs of one forward pass of the CelebA-HQ U-Net (256², batch 1, random weights), counted by torch's
   FlopCounterMode on the CPU.
2. How many such passes each notebook's real-world path makes at its default settings: the notebook runs through
   its `WORLD` branch on a small CelebA-HQ-layout model with random weights (as tests/test_notebooks_real_world.py
   does), and a hook on the mid block and the decoder counts images. An asymmetric step runs the encoder and mid
   block once and the decoder twice; the extra decoder run is counted as half a pass. Training (notebooks 03 and
   04) also runs backward through the edited decoder pass: the U-Net is frozen, so only the gradients of the
   decoder's inputs are computed, about one more decoder pass (half a pass). Training steps run unbatched, as they
   do on a GPU. CLIP's share (under 1% of a 256² U-Net pass) is left out.

Passes × FLOPs divided by a T4's float32 throughput (8.1 TFLOP/s peak; 4–5 reached by convolutions) gives the
estimate the notebooks print (measured here: 02 makes 3,010 passes,
5.0–6.2 min; 03 2,767, 4.6–5.7 min; 04 2,836, 4.7–5.9 min; 05 4,411, 7.3–9.1 min; 06 2,676, 4.4–5.5 min).
About 3 minutes on 2 cores.

    python benchmarks/real_unet_flops.py
"""
from __future__ import annotations

import contextlib
import io
import runpy
import tempfile
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parent.parent
T4_TFLOPS = (4.0, 5.0)  # float32 convolutions reach about half to 60% of the 8.1 peak


def unet_tflop() -> float:
    """TFLOP of one CelebA-HQ U-Net forward pass at 256², batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    from asyrp_edu.models import CELEBA_HQ_UNET_CONFIG, build_unet

    unet = build_unet(CELEBA_HQ_UNET_CONFIG).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(torch.randn(1, 3, 256, 256), torch.tensor([500]))
    return counter.get_total_flops() / 1e12


def count_passes(notebook: str) -> float:
    """Image passes of the U-Net that `notebook` makes in the real world at default settings."""
    from asyrp_edu import registry, train_asyrp, world
    from asyrp_edu.delta_block import DeltaBlock
    from asyrp_edu.hspace import asymmetric_eps, h_shape, temb_dim
    from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet
    from asyrp_edu.tiny_clip import load_tiny_clip

    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    small_unet = build_unet(CELEBA_HQ_LAYOUT_SMALL)
    small_unet.save_pretrained(folder / "unet")
    counts = {"mid": 0, "decoder": 0, "backward": 0}
    original_load = registry.load_ddpm

    def load_counted(name, device="cpu", revision=None):  # the notebook's U-Net, with image counters attached
        unet, schedule = original_load(name, device, revision)
        unet.mid_block.register_forward_hook(lambda m, args, out: counts.__setitem__("mid", counts["mid"] + len(out)))
        unet.up_blocks[0].register_forward_hook(count_decoder)
        return unet, schedule

    def count_decoder(module, args, out) -> None:  # a decoder pass; one with gradients is backpropagated once
        out = out[0] if isinstance(out, tuple) else out
        counts["decoder"] += len(out)
        if torch.is_grad_enabled() and out.requires_grad:
            counts["backward"] += len(out)

    def unbatched(*args, **kwargs):  # training's two decoder passes one after the other, as on a GPU (on a CPU they
        # run as one 2B batch, whose backward would count the unedited half too)
        return asymmetric_eps(*args, **{**kwargs, "batched": False})

    def random_editor(edit, model, **kwargs):  # stands in for the authors' download
        block = DeltaBlock(h_shape(small_unet)[0], temb_dim(small_unet))
        torch.nn.init.normal_(block.conv2.weight, std=0.05)  # non-zero, so edited steps run as they would
        return block

    # the hooks see eager passes only: the sliders' TorchScript trace (used for small models on a CPU; the real 256²
    # model on a GPU renders eagerly) and the shared-skip decoder (which skips up_blocks[0]'s forward; it saves
    # FLOPs, so counting its pair as two decoder passes errs on the long side) are switched off
    with mock.patch.object(world, "default_world", lambda: str(folder)), \
            mock.patch("asyrp_edu.widgets.trace_for_rendering", lambda unet: unet), \
            mock.patch("asyrp_edu.shared_skips.worth_it", lambda enc: False), \
            mock.patch.object(registry, "load_ddpm", load_counted), \
            mock.patch.object(registry, "load_clip", lambda name, device: load_tiny_clip(device=device)), \
            mock.patch.object(registry, "official_editor", random_editor), \
            mock.patch.object(train_asyrp, "asymmetric_eps", unbatched), \
            mock.patch.dict("os.environ", {"ASYRP_EDU_SMOKE": "0"}):
        with contextlib.redirect_stdout(io.StringIO()):  # the notebook's own printing and widgets
            runpy.run_path(str(ROOT / "notebooks" / f"{notebook}.py"), run_name="__main__")
    # every mid-block image is one encoder + mid pass; decoder runs beyond one per mid pass are the asymmetric extras;
    # a backward through the frozen decoder costs about one decoder pass
    return counts["mid"] + 0.5 * (counts["decoder"] - counts["mid"]) + 0.5 * counts["backward"]


def main() -> None:
    """Count FLOPs once, then the passes of each notebook named (default: 02 to 06), and print the estimates."""
    import argparse

    import matplotlib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ["02_ddim", "03_h_space", "04_train_asyrp", "05_linearity", "06_combinations"]
    parser.add_argument("notebooks", nargs="*", default=default,
                        help=f"notebook names without .py (default: {' '.join(default)})")
    args = parser.parse_args()
    missing = [n for n in args.notebooks if not (ROOT / "notebooks" / f"{n}.py").is_file()]
    if missing:
        parser.error(f"no notebook {missing} in {ROOT / 'notebooks'}")
    matplotlib.use("Agg")
    tflop = unet_tflop()
    print(f"CelebA-HQ U-Net, 256², batch 1: {tflop:.3f} TFLOP per forward pass")
    for notebook in args.notebooks:
        passes = count_passes(notebook)
        low, high = (passes * tflop / t / 60 for t in reversed(T4_TFLOPS))
        print(f"{notebook}: {passes:,.0f} image passes -> {low:.1f}–{high:.1f} min of U-Net work on a T4 "
              f"({T4_TFLOPS[0]:g}–{T4_TFLOPS[1]:g} TFLOP/s)")


if __name__ == "__main__":
    main()
