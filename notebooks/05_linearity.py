# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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

# %%
# Setup: installs the package on Colab only; on Binder or your laptop it is already installed.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "asyrp-edu @ git+https://github.com/asyrp-edu/asyrp_edu"], check=True)

# %%
import tempfile

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from asyrp_edu import sliders, toy, widgets
from asyrp_edu.widgets import LIVE_STEPS
from asyrp_edu.editing import Intervals, ScaledEditor, generate_edited
from asyrp_edu.evaluate_edits import TOY_EDITS
from asyrp_edu.evaluator import load_evaluator
from asyrp_edu.exercises import check_step_scale
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.properties import delta_h_along_trajectory, global_delta_h, measure_linearity, mean_changes, \
    timestep_cosines, unedited_judgement
from asyrp_edu.settings import steps
from asyrp_edu.train_asyrp import cached_inversion, load_editor
from asyrp_edu.viz import image_grid

unet, schedule = load_toy_ddpm()
judge = load_evaluator()
cache = tempfile.mkdtemp()
scene = widgets.make_scene(unet, schedule, num_steps=steps(LIVE_STEPS, 6), cache_dir=cache)

# %% [markdown]
# ## 1 · Sliders
# **Strength** of one editor, from −2 (edit backwards) to 2 (overshoot). The image is re-generated from the cached
# inversion with 20 steps (the editors were trained with 40, so Δh is doubled — see exercise 1).

# %%
display(sliders.strength_widget(scene, "smiling"))

# %% [markdown]
# **t_edit**: where editing stops. A large t_edit edits only the first, coarse steps; a small one keeps editing
# into the details.

# %%
display(sliders.t_edit_widget(scene, "smiling"))

# %% [markdown]
# **Scrubber**: x_t, P_t and D_t at each step of the reverse process, unedited (top) and edited (bottom). The
# edit shows up in P_t first; D_t stays the same in both rows while editing, because Asyrp never edits it.

# %%
display(sliders.scrubber_widget(scene, "smiling"))

# %% [markdown]
# **Your own image**: upload a picture; it is centre-cropped, shrunk to 32×32, inverted and shown in a strength
# slider. (The toy DDPM only knows cartoon faces, so expect surprises on photos.)

# %%
output = W.Output()


def show_scene(new_scene):
    with output:
        output.clear_output()
        display(sliders.strength_widget(new_scene, "smiling"))


display(sliders.upload_widget(unet, schedule, show_scene, num_steps=steps(LIVE_STEPS, 6), cache_dir=cache), output)

# %% [markdown]
# ## 2 · The linearity strip
# The paper's figure: one editor applied with scales −1 … 1 to the same faces.

# %%
n_steps = steps(40, 8)
faces, _ = toy.sample(4, seed=3, heldout=True)
x_T = cached_inversion(unet, schedule, faces, n_steps, cache, progress=False)
scales = [-1.0, -0.5, 0.0, 0.5, 1.0]
for edit in ("smiling", "glasses"):
    editor, config = load_editor(unet, edit=edit)
    columns = [generate_edited(unet, x_T, schedule, ScaledEditor(editor, s), Intervals(config.t_edit), n_steps)
               for s in scales]
    image_grid([torch.stack([c[i] for c in columns]) for i in range(len(faces))],
               col_titles=[f"×{s:g}" for s in scales], title=f"{edit}: Δh × scale");

# %% [markdown]
# ## 3 · Linearity, measured
# For 32 held-out faces, the evaluation network reads the edited attribute at each scale. If h-space is linear, the
# mean change grows in proportion to the scale: Pearson r close to 1 (the bar is 0.98). The full measurement on 64
# faces and four editors is `asyrp-edu hspace` (about 12 minutes; its numbers are in the README).

# %%
heldout, _ = toy.sample(steps(32, 4), seed=0, heldout=True)
heldout_x_T = cached_inversion(unet, schedule, heldout, n_steps, cache, progress=False)
base = unedited_judgement(unet, schedule, judge, heldout_x_T, n_steps)  # the unedited reading, computed once
fig, ax = plt.subplots(figsize=(5, 3.2))
linearity = {}
for edit in ("smiling", "glasses"):
    editor, config = load_editor(unet, edit=edit)
    lin = linearity[edit] = measure_linearity(unet, schedule, editor, config.t_edit, judge,
                                              TOY_EDITS[edit]["attribute"], heldout_x_T, n_steps, base=base)
    ax.plot(lin.scales, lin.mean_change, "o-", label=f"{edit}: r = {lin.pearson_r:.3f}")
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("scale of Δh")
ax.set_ylabel("mean change of the attribute")
ax.legend(fontsize=8);

# %% [markdown]
# ## 4 · Homogeneity and consistency across timesteps
# We record Δh_t = f_t(h_t, t) while editing 16 training faces, average it over the faces (one Δh_t per t), and
# also over t (a single Δh). Applied to *new* faces, how much of the per-image f_t's effect do they keep?
# Averaging over t also shortens Δh (the Δh_t point in slightly different directions), so the last bar gives the
# single Δh back the mean length of the Δh_t: then only the direction is shared.

# %%
editor, config = load_editor(unet, edit="smiling")
train_faces, _ = toy.sample(steps(16, 4), seed=0)
train_x_T = cached_inversion(unet, schedule, train_faces, n_steps, cache, progress=False)
per_image = delta_h_along_trajectory(unet, schedule, editor, config.t_edit, train_x_T, n_steps)
variants = {"mean over images": global_delta_h(per_image),
            "mean over images and t": global_delta_h(per_image, over_timesteps=True),
            "… length kept": global_delta_h(per_image, over_timesteps=True, keep_norm=True)}
effect = {"f_t (per image)": linearity["smiling"].mean_change[scales.index(1.0)]}  # scale 1 of section 3: f_t itself
effect.update({name: mean_changes(unet, schedule, dh, config.t_edit, judge, heldout_x_T, ["mouth"], n_steps,
                                  base)["mouth"] for name, dh in variants.items()})
ts, cos = timestep_cosines(global_delta_h(per_image))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].bar(list(effect), [effect[k] / effect["f_t (per image)"] for k in effect])
axes[0].axhline(0.9, color="k", ls="--", lw=1)
axes[0].set_title("share of f_t's effect on mouth (bar: 0.9)", fontsize=9)
axes[0].tick_params(axis="x", labelsize=8)
im = axes[1].imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
axes[1].set_xticks(range(len(ts)), ts, rotation=90, fontsize=6)
axes[1].set_yticks(range(len(ts)), ts, fontsize=6)
axes[1].set_title("cos(Δh_t, Δh_s): consistency across timesteps", fontsize=9)
fig.colorbar(im, ax=axes[1])
fig.tight_layout()

# %% [markdown]
# ## Exercises
# **1.** The editors were trained with 40 steps; the sliders sample with 20. Each step then has to carry twice as
# much of the edit. Write the factor Δh is multiplied by.

# %%
def my_step_scale(n_train, n_test):
    # YOUR CODE HERE — replace the line below
    return n_train / n_test


check_step_scale(my_step_scale)

# %% [markdown]
# **2. (think)** In section 4 the single Δh averaged over images *and* timesteps keeps most of the effect. What does
# that say about how f_t uses its inputs h_t and t? Look at the cosine matrix before answering.
