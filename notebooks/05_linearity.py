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
# # 05 · Steering h-space: sliders, linearity, homogeneity
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asyrp-edu/asyrp_edu/blob/main/notebooks/05_linearity.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/asyrp-edu/asyrp_edu/main?labpath=notebooks%2F05_linearity.ipynb)
#
# Kwon et al. claim that h-space behaves like a well-made latent space:
#
# * **linearity** — scaling Δh scales the edit, and a negative scale edits backwards;
# * **homogeneity** — one Δh, averaged over images, works for every image;
# * **consistency across timesteps** — Δh_t points the same way at every t.
#
# Drag the sliders first; then we measure each claim against the toy world's ground truth.
#
# `WORLD` switches worlds, as in notebooks 02–04: the toy world on a CPU, `"celeba_hq"` on a Colab GPU with the
# authors' released editors (smiling, makeup, tanned, young). The real world has no ground truth, so there CLIP reads
# each edit: the cosine between the image's CLIP embedding and the edit's text direction ΔT.

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

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from tqdm.auto import tqdm

from asyrp_edu import sliders, toy
from asyrp_edu.widgets import LIVE_STEPS
from asyrp_edu.editing import Intervals, generate_scaled
from asyrp_edu.exercises import check_step_scale
from asyrp_edu.properties import delta_h_along_trajectory, global_delta_h, measure_linearity, mean_changes, \
    timestep_cosines, unedited_judgement
from asyrp_edu.settings import run_report, steps
from asyrp_edu.train_asyrp import cached_inversion
from asyrp_edu.viz import image_grid
from asyrp_edu.world import load_world

WORLD = None  # "toy", "celeba_hq", or a local model folder; None = toy without a GPU
started = time.time()
world = load_world(WORLD)
is_toy = world.name == "toy"
unet, schedule = world.unet, world.schedule
edit_a, edit_b = world.live_edits()[:2]  # toy: smiling, glasses; real: smiling, makeup
judge = world.judge((edit_a, edit_b))  # the evaluation network (toy) or CLIP along ΔT (real)
n_faces = steps(16, 4) if is_toy else steps(4, 2)  # faces measured in sections 3 and 4 (64: `asyrp-edu hspace`)
cache = tempfile.mkdtemp()
# Estimated, not measured on a T4 (see the end): about 4,400 image passes of the 256² U-Net at 0.5 TFLOP each
# (benchmarks/real_unet_flops.py), and a T4 does roughly 4–5 TFLOP/s in float32.
if not is_toy:
    print("expected on a Colab T4: 8 to 10 minutes, the sliders 2 to 4 s per change, a few GB of GPU memory")
scene = world.scene(num_steps=steps(LIVE_STEPS, 6), cache_dir=cache)

# %% [markdown]
# ## 1 · Sliders
# **Strength** of one editor, from −2 (edit backwards) to 2 (overshoot). The image is re-generated from the cached
# inversion with 16 steps (the editors were trained with 40, so Δh is multiplied by 40/16 = 2.5 — see exercise 1).
# Few, large steps make a quick preview but a less clean edit. On 64 held-out toy faces at strength 1, the smiling
# editor's 16-step preview makes 94% of them smile, close to the 40-step edit (97%). But it also puts glasses on or
# takes them off on 38% of the faces (9% at 40 steps), and changes eye size twice as much (0.30 against 0.14). The
# strip in section 2 uses 40 steps.

# %%
display(sliders.strength_widget(scene, edit_a))

# %% [markdown]
# **t_edit**: where editing stops. A large t_edit edits only the first, coarse steps; a small one keeps editing
# into the details.

# %%
display(sliders.t_edit_widget(scene, edit_a))

# %% [markdown]
# **Scrubber**: x_t, P_t and D_t at each step of the reverse process, unedited (top) and edited (bottom). The
# edit shows up in P_t first. D_t always takes the unedited ε(x_t), so at the first step it is the same in both rows;
# later it differs only because the edited x_t has drifted away from the unedited one.

# %%
display(sliders.scrubber_widget(scene, edit_a))

# %% [markdown]
# **Your own image**: upload a picture; it is centre-cropped, resized to the model's size (32×32 in the toy world,
# 256×256 for CelebA-HQ), inverted and shown in a strength slider. (The toy DDPM only knows cartoon faces, so expect
# surprises on photos.)

# %%
output = W.Output()


def show_scene(new_scene):
    with output:
        output.clear_output()
        display(sliders.strength_widget(new_scene, edit_a))


display(sliders.upload_widget(unet, schedule, show_scene, num_steps=steps(LIVE_STEPS, 6), cache_dir=cache,
                              editors=scene.editors, t_boost=scene.t_boost), output)

# %% [markdown]
# ## 2 · The linearity strip
# The paper's figure: one editor applied with scales −1 … 1 to the same faces.

# %%
n_steps = steps(40, 8)
faces = world.images(4 if is_toy else steps(2, 1), seed=3)
x_T = cached_inversion(unet, schedule, faces, n_steps, cache, progress=False,
                       fixed_point_iters=world.inversion_iters)
scales = [-1.0, -0.5, 0.0, 0.5, 1.0]
for edit in (edit_a, edit_b):
    editor, config = scene.editors[edit]
    # the sliders' intervals: quality boosting below t_boost in the real world (the toy scenes have t_boost 0)
    intervals = Intervals(config.t_edit, min(scene.t_boost, config.t_edit), schedule.T)
    # Δh × s for every s: one batch of 5 scales × 4 faces where there is no boosting noise (faster on a CPU)
    columns = generate_scaled(unet, x_T, schedule, editor, scales, intervals, n_steps)
    image_grid([torch.stack([c[i] for c in columns]) for i in range(len(faces))],
               col_titles=[f"×{s:g}" for s in scales], title=f"{edit}: Δh × scale");

# %% [markdown]
# ## 3 · Linearity, measured
# For 16 held-out faces, the evaluation network reads the edited attribute at each scale. If h-space is linear, the
# mean change grows in proportion to the scale: Pearson r close to 1 (the bar is 0.98). The full measurement on 64
# faces and four editors is `asyrp-edu hspace` (about 14 minutes; its numbers are in the README). In the real world
# CLIP reads 4 of the model's own samples instead (fewer faces: each costs seconds on a T4).

# %%
heldout = world.images(n_faces, seed=0)
heldout_x_T = cached_inversion(unet, schedule, heldout, n_steps, cache, progress=False,
                               fixed_point_iters=world.inversion_iters)
base = unedited_judgement(unet, schedule, judge, heldout_x_T, n_steps)  # the unedited reading, computed once
fig, ax = plt.subplots(figsize=(5, 3.2))
linearity = {}
for edit in tqdm((edit_a, edit_b), desc="linearity: 4 scales per editor"):
    editor, config = scene.editors[edit]
    lin = linearity[edit] = measure_linearity(unet, schedule, editor, config.t_edit, judge, world.attribute(edit),
                                              heldout_x_T, n_steps, base=base)
    ax.plot(lin.scales, lin.mean_change, "o-", label=f"{edit}: r = {lin.pearson_r:.3f}")
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("scale of Δh")
ax.set_ylabel("mean change of the attribute" if is_toy else "mean change of cos(E_I, ΔT)")
ax.set_title("linearity: the bar is Pearson r ≥ 0.98", fontsize=9)
ax.legend(fontsize=8);

# %% [markdown]
# ## 4 · Homogeneity and consistency across timesteps
# We record Δh_t = f_t(h_t, t) while editing 16 training faces (4 in the real world), average it over the faces
# (one Δh_t per t), and
# also over t (a single Δh). Applied to *new* faces, how much of the per-image f_t's effect do they keep?
# Averaging over t also shortens Δh (the Δh_t point in slightly different directions), so the last bar gives the
# single Δh back the mean length of the Δh_t: then only the direction is shared. The right plot shows what a single
# Δh cannot share: f_t pushes harder at some timesteps than at others.

# %%
editor, config = scene.editors[edit_a]
# toy: faces from the training stream (the held-out ones come from another stream); real: other samples of the model
train_faces = toy.sample(steps(16, 4), seed=0)[0] if is_toy else world.images(n_faces, seed=10)
train_faces = train_faces.to(world.device)
train_x_T = cached_inversion(unet, schedule, train_faces, n_steps, cache, progress=False,
                             fixed_point_iters=world.inversion_iters)
per_image = delta_h_along_trajectory(unet, schedule, editor, config.t_edit, train_x_T, n_steps)
variants = {"mean over images": global_delta_h(per_image),
            "mean over images and t": global_delta_h(per_image, over_timesteps=True),
            "… length kept": global_delta_h(per_image, over_timesteps=True, keep_norm=True)}
attribute = world.attribute(edit_a)
lin_a = linearity[edit_a]
effect = {"f_t (per image)": lin_a.mean_change[lin_a.scales.index(1.0)]}  # scale 1 of section 3: f_t itself
effect.update({name: mean_changes(unet, schedule, dh, config.t_edit, judge, heldout_x_T, [attribute], n_steps,
                                  base)[attribute] for name, dh in tqdm(variants.items(), desc="global Δh")})
mean_per_t = variants["mean over images"]  # {t: (1, C_h, 8, 8)}
ts, cos = timestep_cosines(mean_per_t)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
reference = effect["f_t (per image)"] or float("nan")  # an editor without any effect has no shares to show
axes[0].bar(list(effect), [effect[k] / reference for k in effect])
axes[0].axhline(0.9, color="k", ls="--", lw=1)
axes[0].set_title(f"share of f_t's effect on {attribute} (bar: 0.9)", fontsize=9)
axes[0].tick_params(axis="x", labelsize=8, labelrotation=20)
im = axes[1].imshow(cos.cpu().numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
axes[1].set_xticks(range(len(ts)), ts, rotation=90, fontsize=6)
axes[1].set_yticks(range(len(ts)), ts, fontsize=6)
axes[1].set_title("cos(Δh_t, Δh_s): consistency across timesteps", fontsize=9)
fig.colorbar(im, ax=axes[1])
axes[2].plot(ts, [float(mean_per_t[t].norm()) for t in ts], "o-", ms=3, label="‖mean over images of Δh_t‖")
axes[2].axhline(float(variants["mean over images and t"][ts[0]].norm()), color="k", ls="--", lw=1,
                label="‖mean over images and t‖")
axes[2].invert_xaxis()  # the reverse process runs from T down to t_edit
axes[2].set_xlabel("t")
axes[2].set_title("length of Δh_t along the edit", fontsize=9)
axes[2].legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# ## Exercises
# **1.** The editors were trained with 40 steps; the sliders sample with 16. Each step then has to carry 2.5 times as
# much of the edit. Write the factor Δh is multiplied by.

# %%
def my_step_scale(n_train, n_test):
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_step_scale(my_step_scale)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_step_scale(n_train, n_test):
#     return n_train / n_test
# ```
#
# </details>

# %% [markdown]
# **2. (think)** In section 4 the single Δh averaged over images *and* timesteps keeps most of the effect. What does
# that say about how f_t uses its inputs h_t and t? Look at the cosine matrix and the lengths before answering.
#
# <details><summary>One way to test your answer (open it after trying)</summary>
#
# Train an f_t that never sees t (the authors' `--ignore_timesteps`) with the shipped smiling editor's recipe
# (`scripts/train_toy_editors.sh`), in a terminal, about 2 minutes:
#
# `asyrp-edu train --world toy --edit smiling --n-images 32 --epochs 4 --t-edit 400 --lr 8e-4 --keep others
# --lambda-keep 3 --lambda-recon 6 --ignore-timesteps --out runs/editors/smiling_no_t`
#
# Its Δh_t grow along the edit as much as the shipped editor's: f_t reads how far the denoising has come from h_t,
# not only from t. Why are the early Δh_t short at all? At large t, P_t magnifies a change of ε by √(1 − ᾱ_t)/√ᾱ_t,
# so the L1 and keep terms weigh most; eased at t ≥ 700, the early steps grow (README, "Why smiling misses
# homogeneity over timesteps").
#
# </details>


# %%
if not is_toy:  # what this run took on your GPU, to compare with the estimate printed at the top
    print(run_report(started))
