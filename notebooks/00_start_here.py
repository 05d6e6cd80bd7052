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
# # 00 · Start here
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asyrp-edu/asyrp_edu/blob/main/notebooks/00_start_here.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/asyrp-edu/asyrp_edu/main?labpath=notebooks%2F00_start_here.ipynb)
#
# **asyrp_edu** lets you see, train and steer semantic edits inside a frozen diffusion model, following Kwon et al.,
# *Diffusion Models Already Have a Semantic Latent Space* (ICLR 2023, "Asyrp").
#
# ## What runs where
#
# | world | where | models | first edit | a notebook |
# |---|---|---|---|---|
# | `"toy"` | any CPU: Binder (2 GB), laptop, Colab without GPU | 32² cartoon faces; DDPM, tiny CLIP, judge and editors ship with the package | ~10 s | 1–3 min |
# | `"celeba_hq"`, `"church"`, `"bedroom"` | Colab GPU (T4) | `google/ddpm-*-256` through diffusers, OpenAI CLIP, LPIPS, the authors' editors (downloaded once) | ~1 min | 5–20 min |
#
# The toy world has ground truth: every face comes with its attributes, so edits are *measured*, not eyeballed.
#
# ## The switch
# `WORLD` below picks the world for this notebook; notebooks 02–06 have the same line (01 trains a DDPM from scratch
# in the toy world; 07 switches between `"toy-ldm"` and `"ldm_celebahq"`). Left at `None` it is the toy world without
# a GPU and `"celeba_hq"` with one.

# %%
# Setup: installs the package on Colab only; on Binder or your laptop it is already installed.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "asyrp-edu @ git+https://github.com/asyrp-edu/asyrp_edu"], check=True)

# %%
WORLD = None  # "toy", "celeba_hq", "church", "bedroom", or a local model folder; None = automatic

# %%
import tempfile
import time

import torch

from asyrp_edu.editing import Intervals, generate_edited
from asyrp_edu.settings import steps
from asyrp_edu.train_asyrp import cached_inversion
from asyrp_edu.viz import image_grid
from asyrp_edu.world import FIRST_EDIT, load_world

start = time.perf_counter()
world = load_world(WORLD)
print(f"world: {world.name} on {world.device}, images {world.image_size}², {world.num_steps} DDIM steps")

# %% [markdown]
# ## A first edit
# Invert a few images to x_T (deterministic DDIM), then regenerate them with an editor ("smiling" for faces, "gothic"
# for churches, "princess" for bedrooms) adding Δh_t to the U-Net's bottleneck during the editing interval
# [T, t_edit]. Below t_boost (real worlds) both rows get the same η = 1 noise, so they differ only by the edit.

# %%
n_steps = steps(world.num_steps, 8)
images = world.images(4 if world.name == "toy" else 2, seed=0)
x_T = cached_inversion(world.unet, world.schedule, images, n_steps, tempfile.mkdtemp(), progress=False,
                       fixed_point_iters=world.inversion_iters)
edit = FIRST_EDIT.get(world.name)  # None for a model folder: the authors released no editors for it
editor, t_edit, t_boost = world.editor(edit) if edit else (None, world.schedule.T - 1, 0)
rows, titles = [images], ["original"]
with torch.no_grad():
    for name, delta_h in (("reconstructed", None), (edit, editor)):
        if name is not None:
            rows.append(generate_edited(world.unet, x_T, world.schedule, delta_h, Intervals(t_edit, t_boost), n_steps))
            titles.append(name)
image_grid(rows, row_titles=titles, title=f"t_edit = {t_edit}, t_boost = {t_boost}" if edit else
           "no released editor for this model: train one in notebook 04");
print(f"done in {time.perf_counter() - start:.0f} s")
if torch.cuda.is_available():
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")

# %% [markdown]
# ## Where next
# * **01_ddpm** — the forward process and a DDPM trained live; **02_ddim** — P_t, D_t, η, inversion.
# * **03_h_space** — the U-Net's bottleneck and the asymmetric reverse process.
# * **04_train_asyrp** — the directional CLIP loss, t_edit / t_boost, training f_t, edits measured.
# * **05_linearity**, **06_combinations** — sliders, linearity, homogeneity, mixing editors.
# * **07_latent_diffusion** — the same edits inside a latent diffusion model, through its decoder.
