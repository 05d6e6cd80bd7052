"""`CompVis/ldm-celebahq-256` at its real size, with random weights: save, load through the registry, decode z_t and
P_t along a short trajectory, and edit h with a fresh f_t. Prints shapes, seconds per step and the decoding cost.

This is the Colab path of notebook 07 with nothing downloaded: a VQModel and a latent UNet2DModel built from the
CompVis configs (`autoencoder.LDM_CELEBA_HQ_VQ_CONFIG`, `ldm.LDM_CELEBA_HQ_UNET_CONFIG`), saved as an LDMPipeline
folder (about 1.3 GB, in a temporary folder that is deleted afterwards) and read back by `registry.load_ldm`.

    python benchmarks/ldm_full_config.py             # 3 steps, 1.5 to 3 minutes on 2 cores
    python benchmarks/ldm_full_config.py --steps 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from asyrp_edu.cli_editors import step_count


def main() -> None:
    """Build, save, load, run; print what a student on Colab would get at this size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=step_count, default=3, help="DDIM steps of the trajectory")
    args = parser.parse_args()

    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    from asyrp_edu.autoencoder import LDM_CELEBA_HQ_VQ_CONFIG
    from asyrp_edu.editing import Intervals
    from asyrp_edu.hspace import h_shape
    from asyrp_edu.ldm import LDM_CELEBA_HQ_UNET_CONFIG, trajectory_frames
    from asyrp_edu.registry import load_ldm
    from asyrp_edu.train_asyrp import new_editor

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pipe = LDMPipeline(vqvae=VQModel(**LDM_CELEBA_HQ_VQ_CONFIG), unet=UNet2DModel(**LDM_CELEBA_HQ_UNET_CONFIG),
                           scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015,
                                                   beta_end=0.0195, clip_sample=False))
        pipe.save_pretrained(Path(tmp) / "ldm")
        del pipe
        size_gb = sum(f.stat().st_size for f in (Path(tmp) / "ldm").rglob("*") if f.is_file()) / 1e9
        ldm = load_ldm(Path(tmp) / "ldm")  # the same call as load_ldm("ldm_celebahq") once the files are cached
        print(f"built, saved ({size_gb:.2f} GB) and loaded in {time.perf_counter() - start:.0f} s")
        unet, schedule, codec = ldm.unet, ldm.schedule, ldm.codec
        print(f"image {ldm.image_size}², latent {unet.config.in_channels} × {unet.config.sample_size}², "
              f"h {h_shape(unet)}")
        with torch.no_grad():
            z_T = torch.randn(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
            start = time.perf_counter()
            frames = trajectory_frames(unet, schedule, z_T, args.steps, codec=codec)
            plain = time.perf_counter() - start
            editor = new_editor(unet)
            torch.nn.init.normal_(editor.conv2.weight, std=0.05)  # a non-zero Δh, so the edit path really runs
            start = time.perf_counter()
            edited = trajectory_frames(unet, schedule, z_T, args.steps, codec=codec, delta_h=editor,
                                       intervals=Intervals(0))
            asym = time.perf_counter() - start
        assert frames[0].x_t.shape == (1, 3, ldm.image_size, ldm.image_size)
        change = (edited[-1].x_t - frames[-1].x_t).abs().mean().item()
        assert change > 0, "the edited trajectory should differ from the plain one"
        print(f"{len(frames)} frames of x_t and P_t, each {tuple(frames[0].P_t.shape)}")
        print(f"plain: {plain / args.steps:.1f} s per step (U-Net + two decodes); "
              f"asymmetric: {asym / args.steps:.1f} s "
              f"per step; ratio {asym / plain:.2f}; the edit changed the final image by {change:.2e} (mean |Δ|; "
              f"random weights respond weakly)")


if __name__ == "__main__":
    main()
