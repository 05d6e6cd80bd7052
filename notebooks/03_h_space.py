# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · h-space: the U-Net's bottleneck as a semantic latent space
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asyrp-edu/asyrp_edu/blob/main/notebooks/03_h_space.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/asyrp-edu/asyrp_edu/main?labpath=notebooks%2F03_h_space.ipynb)
#
# Kwon et al. call the output of the U-Net's middle block **h-space**. Changing h by Δh_t changes the noise
# prediction to ε(x_t | Δh_t). This notebook
#
# 1. finds h in a diffusers `UNet2DModel` (the toy model and the CelebA-HQ configuration),
# 2. splits the U-Net at h: encoder and middle block once, decoder twice,
# 3. adds a *random* Δh and compares the **asymmetric** reverse process (edited ε in P_t only) with the symmetric one,
# 4. optimises one Δh directly, shared by every image and timestep, so that the faces move towards a text.
#
# (Notebook 04 explains the directional CLIP loss used in section 4 and learns the network f_t(h_t, t).)

# %%
# Setup: installs the package on Colab only; on Binder or your laptop it is already installed.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "asyrp-edu @ git+https://github.com/asyrp-edu/asyrp_edu"], check=True)

# %%
import tempfile
import time

import torch

from asyrp_edu import hspace, toy
from asyrp_edu.editing import ConstantDeltaH, Intervals, generate_edited
from asyrp_edu.evaluate_edits import TOY_EDITS
from asyrp_edu.evaluator import load_evaluator
from asyrp_edu.exercises import check_asymmetric_step
from asyrp_edu.models import CELEBA_HQ_UNET_CONFIG, build_unet
from asyrp_edu.settings import run_report, steps
from asyrp_edu.train_asyrp import EditorConfig, cached_inversion, load_editor, train_editor
from asyrp_edu.viz import LiveLossPlot, image_grid
from asyrp_edu.world import FIRST_EDIT, OFFICIAL_PROMPTS, load_world

WORLD = None  # "toy", "celeba_hq", "church", "bedroom", or a local model folder; None = toy without a GPU
world = load_world(WORLD)
if world.name != "toy":  # counted, not timed: benchmarks/real_unet_flops.py (U-Net work, training's backward
    # included) and benchmarks/real_training_memory.py (batch 1)
    print("expected on a Colab T4: 5 to 6 minutes for this notebook (counted by benchmarks/real_unet_flops.py); "
          "training f_t in section 4 needs about 3.5 GB of GPU memory")
started = time.time()
unet, schedule, size, device = world.unet, world.schedule, world.image_size, world.device

# %% [markdown]
# ## 1 · Where is h?
# h is what `unet.mid_block` returns. A forward hook shows its shape; for the toy model it is (B, 96, 8, 8). The
# CelebA-HQ model of the paper is built from the same kinds of blocks, with more levels and channels, at 256²; its h
# has shape (B, 512, 8, 8) — we build it on the `meta` device, which allocates no memory, just to read the shape.

# %%
seen = {}
hook = unet.mid_block.register_forward_hook(lambda module, inputs, h: seen.update(h=h.shape))
with torch.no_grad():
    unet(torch.zeros(1, 3, size, size, device=device), torch.tensor([500], device=device))
hook.remove()
print(f"{world.name} h:", tuple(seen["h"]))
with torch.device("meta"):
    celeba = build_unet(CELEBA_HQ_UNET_CONFIG)
print("CelebA-HQ h:", hspace.h_shape(celeba))

# %% [markdown]
# ## 2 · Split the U-Net at h
# `hspace.encode` runs the time embedding, the down blocks and the middle block; `hspace.decode` runs the up blocks
# from h + Δh. Together they equal one ordinary forward pass — so the asymmetric step can reuse the encoder and only
# run the decoder twice. Even the second decoder run is not whole: each up block starts from [a ; skip], a
# convolution of a concatenation is a sum of one convolution per part, and the skip part is the same in both runs
# (`asyrp_edu.shared_skips`). On the CelebA-HQ model an asymmetric step costs about 1.5 plain steps, not 2.

# %%
x = world.images(2, seed=0)
t = torch.tensor([600], device=device)
with torch.no_grad():
    enc = hspace.encode(unet, x, t)
    split = hspace.decode(unet, enc)
    full = unet(x, t).sample
print(f"h: {tuple(enc.h.shape)}, max |decode(encode(x)) − unet(x)| = {float((split - full).abs().max()):.2e}")

# %% [markdown]
# ## 3 · A random Δh: asymmetric vs symmetric
# We invert four held-out images (faces in the toy world), then regenerate them while adding the same random Δh
# during [T, t_edit]. With the **asymmetric** process (edited ε in P_t only) the images change; with the
# **symmetric** one (edited ε in both P_t and D_t) the changes largely cancel out — the paper's motivation for
# asymmetry.

# %%
n_steps = steps(40, 10)
faces = world.images(4, seed=1)
x_T = cached_inversion(unet, schedule, faces, n_steps, tempfile.mkdtemp(), progress=False,
                       fixed_point_iters=world.inversion_iters)
g = torch.Generator().manual_seed(0)
random_dh = torch.randn(1, *hspace.h_shape(unet), generator=g).to(device)
random_dh = random_dh / random_dh.norm() * enc.h[:1].norm() * 0.5  # half the size of a typical h
intervals = Intervals(t_edit=400)
plain = generate_edited(unet, x_T, schedule, None, intervals, n_steps)
asym = generate_edited(unet, x_T, schedule, random_dh, intervals, n_steps)
sym = generate_edited(unet, x_T, schedule, random_dh, intervals, n_steps, symmetric=True)
image_grid([r.cpu() for r in (faces, plain, asym, sym)],
           row_titles=["original", "reconstructed", "asymmetric Δh", "symmetric Δh"]);
print(f"mean |change| asymmetric: {float((asym - plain).abs().mean()):.3f}, "
      f"symmetric: {float((sym - plain).abs().mean()):.3f}")

# %% [markdown]
# ## 4 · One Δh for every image, optimised directly
# A random Δh changes faces in no particular direction. The simplest *useful* editor is one Δh (the shape of h),
# shared by all images and timesteps, optimised so that P_t moves the way a text points: "a sad cartoon face" →
# "a smiling cartoon face" in the toy world, "face" → "smiling face" for CelebA-HQ, "church" → "gothic church" and
# "bedroom" → "princess bedroom" for the other two (the directional CLIP loss of notebook 04). The paper's
# homogeneity claim says such a global direction already works. We optimise it on a few inverted images, then apply
# it to the four above, which it never saw.

# %%
if world.name == "toy":  # the generator's training stream; the shipped smiling editor's t_edit
    source, target = TOY_EDITS["smiling"]["source"], TOY_EDITS["smiling"]["target"]
    train_faces = toy.sample(steps(32, 4), seed=0)[0].to(device)
    t_edit, batch = load_editor(unet, edit="smiling")[1].t_edit, 16
else:  # the model's own samples as training images; t_edit by the paper's LPIPS rule; the authors' batch of 1
    source, target = OFFICIAL_PROMPTS[FIRST_EDIT.get(world.name, "smiling")]  # church → gothic church, …
    train_faces = world.images(steps(8, 2), seed=0)
    t_edit, batch = world.intervals_for(source, target)[0], 1
config = EditorConfig(source, target, t_edit=t_edit, num_steps=n_steps, epochs=steps(2, 1), batch_size=batch,
                      lr=0.05, seed=0, inversion_iters=world.inversion_iters)
global_dh = ConstantDeltaH(hspace.h_shape(unet))
loss_plot = LiveLossPlot(every=10, title="one global Δh")
loss_plot.finish(train_editor(unet, schedule, world.clip, train_faces, config, tempfile.mkdtemp(), editor=global_dh,
                              progress=False, on_step=loss_plot))
edited = generate_edited(unet, x_T, schedule, global_dh, Intervals(t_edit), n_steps)
image_grid([r.cpu() for r in (faces, plain, edited)], row_titles=["original", "reconstructed", "+ global Δh"]);
if world.name == "toy":  # the evaluation network reads the mouth before and after
    judge = load_evaluator()
    before, after = judge(plain.clamp(-1, 1))["mouth"].mean(), judge(edited.clamp(-1, 1))["mouth"].mean()
    print(f"judge: mean mouth curvature {before:+.2f} before, {after:+.2f} after")

# %% [markdown]
# ## Exercises
# **1.** Write Asyrp's step (η = 0): x_{t−1} = sqrt(ᾱ_{t−1})·P_t(ε(x_t | Δh)) + D_t(ε(x_t)).

# %%
def my_asymmetric_step(x_t, eps, eps_edit, alpha_bar_t, alpha_bar_prev):
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_asymmetric_step(my_asymmetric_step)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_asymmetric_step(x_t, eps, eps_edit, alpha_bar_t, alpha_bar_prev):
#     P_t = (x_t - (1 - alpha_bar_t) ** 0.5 * eps_edit) / alpha_bar_t ** 0.5
#     D_t = (1 - alpha_bar_prev) ** 0.5 * eps
#     return alpha_bar_prev ** 0.5 * P_t + D_t
# ```
#
# </details>

# %% [markdown]
# **2. (think)** In section 3, why does the symmetric process undo most of the edit? Write x_{t−1} for the symmetric
# step as x_t plus a small change and look at which terms depend on ε.


# %%
if world.name != "toy":  # what this run took on your GPU, to compare with the estimate printed at the top
    print(run_report(started))
