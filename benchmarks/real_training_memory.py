"""Peak memory of one f_t update on the real CelebA-HQ settings, measured on the CPU as an estimate for a Colab T4.

One update is what `train_editor` does per timestep: the U-Net encoder and mid block once, the decoder twice
(edited and unedited), P_t^edit (for the LDM decoded by the VQ-VAE, with gradients through it), CLIP ViT-B/32 on
the 256² → 224² images, the directional and L1 losses against the original image, and the backward pass into f_t.
On a GPU `train_editor` runs the two decoder passes one after the other, so the unedited one keeps nothing for
backward; on the CPU it stacks them into one batch of 2B, which is faster there but keeps both for backward.
`--batched` measures that CPU way. (The default "trajectory" reference compares the L1 term with a
plain DDIM step run without gradients instead, which keeps nothing for backward.) Everything is built from
random weights (same configs, float32), so nothing is downloaded. Each batch size runs in a fresh process; the
peak resident memory of that process minus its resident memory just before the update is the activation cost, and
the weights are counted once on top:

    peak ≈ weights (U-Net + CLIP + f_t and its Adam state) + activations(batch)

A GPU holds the same float32 tensors, plus the CUDA context (~0.3–0.5 GB) and allocator slack, so the script adds
0.5 GB and 10% before comparing with a T4's 15 GB. It is an estimate, not a GPU measurement.

    python benchmarks/real_training_memory.py                  # batch 1, 2 and 4: about 4 minutes on 2 cores
    python benchmarks/real_training_memory.py --batches 1      # about 1 minute
    python benchmarks/real_training_memory.py --model ldm      # CompVis/ldm-celebahq-256: latent U-Net + VQ-VAE
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

T4_GIB = 15.0
CUDA_CONTEXT_GIB = 0.5


def rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    """Resident memory of this process now, GiB (Linux's VmRSS; elsewhere the peak so far, which undercounts)."""
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        return kib / 2**20
    except (OSError, StopIteration):
        return rss_gib()


def one_update(batch: int, model_name: str = "ddpm", batched: bool = False) -> dict:
    """Build the models, run one f_t update with `batch` images at 256², return memory and time."""
    import open_clip
    import torch

    from asyrp_edu.autoencoder import build_autoencoder, LatentCodec, LDM_CELEBA_HQ_VQ_CONFIG
    from asyrp_edu.ddim import Schedule, predict_x0
    from asyrp_edu.hspace import asymmetric_eps
    from asyrp_edu.ldm import LDM_CELEBA_HQ_UNET_CONFIG
    from asyrp_edu.losses import asyrp_loss
    from asyrp_edu.models import build_unet, CELEBA_HQ_UNET_CONFIG
    from asyrp_edu.tiny_clip import TinyClip
    from asyrp_edu.train_asyrp import new_editor

    torch.manual_seed(0)
    ldm = model_name == "ldm"
    unet = build_unet(LDM_CELEBA_HQ_UNET_CONFIG if ldm else CELEBA_HQ_UNET_CONFIG).eval().requires_grad_(False)
    codec = LatentCodec(build_autoencoder(LDM_CELEBA_HQ_VQ_CONFIG)).eval().requires_grad_(False) if ldm else None
    model = open_clip.create_model("ViT-B-32", pretrained=None)  # random weights: same shapes as OpenAI's
    clip = TinyClip(model, open_clip.get_tokenizer("ViT-B-32"))
    editor = new_editor(unet)
    optimizer = torch.optim.Adam(editor.parameters(), lr=1e-3)
    weights = sum(p.numel() for m in (unet, model, codec) if m is not None for p in m.parameters()) * 4 / 2**30
    editor_bytes = sum(p.numel() for p in editor.parameters()) * 4 * 3 / 2**30  # weights, Adam's m and v
    delta_T = torch.nn.functional.normalize(torch.randn(model.visual.output_dim), dim=0)
    side = 64 if ldm else 256
    x_t = torch.randn(batch, 3, side, side)  # (B, 3, 256, 256), or latents (B, 3, 64, 64)
    x0 = torch.rand(batch, 3, 256, 256) * 2 - 1
    # warm-up: one forward without gradients, so that one-off allocations count as "before"
    with torch.no_grad():
        asymmetric_eps(unet, x_t, 700, editor, batched=batched)
        if ldm:
            codec.decode(x_t)
    # what is held now, not the peak so far: the warm-up's freed temporaries must not be subtracted from the update's
    before = current_rss_gib()
    start = time.perf_counter()
    _, eps_edit, _ = asymmetric_eps(unet, x_t, 700, editor, batched=batched)
    # P_t^edit = (x_t − sqrt(1 − ᾱ_t) ε_θ(x_t | Δh_t)) / sqrt(ᾱ_t); ε_θ(x_t) feeds only D_t, which the loss never sees
    P_edit = predict_x0(x_t, eps_edit, Schedule.linear().at(700))
    if ldm:
        P_edit = codec.decode(P_edit)  # D(P_t^edit): (B, 3, 256, 256), gradients through the frozen decoder
    parts = asyrp_loss(clip.encode_image, P_edit, x0, delta_T, 1.2, 1.0, "cosine", x0)
    optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    activations = max(rss_gib() - before, 0.0)
    return {"batch": batch, "weights_gib": weights + editor_bytes, "activations_gib": activations,
            "seconds": seconds}


def batch_sizes(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers >= 1 ('1,2,4')."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers, e.g. 1,2,4; got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def main() -> None:
    """Run each batch size in its own process and print the estimate for a 15 GB T4."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=batch_sizes, default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--model", choices=("ddpm", "ldm"), default="ddpm",
                        help="google/ddpm-celebahq-256 (default) or CompVis/ldm-celebahq-256")
    parser.add_argument("--batched", action="store_true",
                        help="both decoder passes in one 2B batch, as train_editor does on the CPU")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_update(args.child, args.model, args.batched)))
        return
    print(f"{args.model}, decoder passes {'in one 2B batch (CPU)' if args.batched else 'one after the other (GPU)'}")
    print(f"{'batch':>5} {'weights GiB':>11} {'activations GiB':>15} {'GPU estimate GiB':>16} {'fits a T4':>9} "
          f"{'CPU s':>6}")
    for batch in args.batches:
        out = subprocess.run([sys.executable, __file__, "--child", str(batch), "--model", args.model,
                              *(["--batched"] if args.batched else [])], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        # on a GPU: the same float32 tensors + the CUDA context, and 10% allocator slack
        estimate = (r["weights_gib"] + r["activations_gib"]) * 1.1 + CUDA_CONTEXT_GIB
        print(f"{batch:>5} {r['weights_gib']:>11.2f} {r['activations_gib']:>15.2f} {estimate:>16.1f} "
              f"{'yes' if estimate < T4_GIB else 'NO':>9} {r['seconds']:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
