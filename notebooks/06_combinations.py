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
# # 06 · Combining edits: Δh = Σ cᵢ·Δhᵢ
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asyrp-edu/asyrp_edu/blob/main/notebooks/06_combinations.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/asyrp-edu/asyrp_edu/main?labpath=notebooks%2F06_combinations.ipynb)
#
# If h-space is linear, editors trained separately can simply be *added*: Δh = c₁·Δh_smiling + c₂·Δh_glasses + …
# The paper shows such combinations on CelebA-HQ. Here you mix the toy editors with sliders, see the combination grid,
# and measure how much of each editor's solo effect survives in the mix.
#
# `WORLD` switches worlds, as in notebooks 02–05: on a Colab GPU (`"celeba_hq"`) the mixer holds the authors'
# released smiling, makeup, tanned and young editors, and CLIP along each edit's text direction ΔT reads the effects.

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

import matplotlib.pyplot as plt
import torch
from IPython.display import display
from tqdm.auto import tqdm

from asyrp_edu import sliders
from asyrp_edu.widgets import LIVE_STEPS
from asyrp_edu.editing import Intervals, MixedEditor, generate_edited
from asyrp_edu.exercises import check_mixed_delta
from asyrp_edu.properties import combination_effects, mean_changes, unedited_judgement
from asyrp_edu.settings import run_report, steps
from asyrp_edu.train_asyrp import cached_inversion
from asyrp_edu.viz import image_grid
from asyrp_edu.world import load_world

WORLD = None  # "toy", "celeba_hq", or a local model folder; None = toy without a GPU
started = time.time()
world = load_world(WORLD)
is_toy = world.name == "toy"
unet, schedule = world.unet, world.schedule
names = world.live_edits()  # toy: smiling, glasses, tanned, blonde, alien; real: smiling, makeup, tanned, young
judge = world.judge(names[:3])  # the evaluation network (toy) or CLIP along ΔT (real)
cache = tempfile.mkdtemp()
# Estimated, not measured on a T4 (see the end): about 2,700 image passes of the 256² U-Net at 0.5 TFLOP each
# (benchmarks/real_unet_flops.py), and a T4 does roughly 4–5 TFLOP/s in float32.
if not is_toy:
    print("expected on a Colab T4: 5 to 7 minutes, the mixer 2 to 4 s per change, a few GB of GPU memory")

# %% [markdown]
# ## 1 · The mixer
# One slider per editor. All at 0 gives the reconstruction; try smiling 1 + glasses 1 (toy world), or a negative
# coefficient to remove an attribute. Each editor edits only in its own interval [T, t_edit], the one it was
# trained for (`MixedEditor(..., t_edits)`).

# %%
scene = world.scene(names, num_steps=steps(LIVE_STEPS, 6), cache_dir=cache, seed=2)
editors = scene.editors  # {name: (f_t, its config)}
display(sliders.mixer_widget(scene))

# %% [markdown]
# ## 2 · The combination grid
# Rows are held-out faces; columns add editors one by one.

# %%
n_steps = steps(40, 8)
faces = world.images(5 if is_toy else steps(3, 1), seed=4)
x_T = cached_inversion(unet, schedule, faces, n_steps, cache, progress=False,
                       fixed_point_iters=world.inversion_iters)
a, b, c, d = names[:4]
plans = {"none": [], a: [a], b: [b], f"{a} + {b}": [a, b], f"+ {c}": [a, b, c], f"+ {d}": [a, b, c, d]}
columns = []
for plan in plans.values():
    mix = MixedEditor({n: editors[n][0] for n in plan}, {n: 1.0 for n in plan},
                      {n: editors[n][1].t_edit for n in plan})  # each editor in its own interval [T, t_edit]
    t_edit = mix.interval_end(schedule.T)  # quality boosting below t_boost in the real world, as in the mixer
    columns.append(generate_edited(unet, x_T, schedule, mix, Intervals(t_edit, min(scene.t_boost, t_edit), schedule.T),
                                   n_steps))
image_grid([torch.stack([c[i] for c in columns]) for i in range(len(faces))], col_titles=list(plans),
           title="Δh added across editors");

# %% [markdown]
# ## 3 · Measured: does each edit survive the mix?
# For 32 held-out faces the evaluation network reads each editor's own attribute, once with the editor alone and
# once in the mix. The bar is 75% of the solo effect. `asyrp-edu hspace` measures the same on 64 faces (README).
# In the real world CLIP reads 4 of the model's samples: the change of cos(E_I, ΔT) for each edit's own ΔT.

# %%
heldout = world.images(steps(32, 4) if is_toy else steps(4, 2), seed=0)
heldout_x_T = cached_inversion(unet, schedule, heldout, n_steps, cache, progress=False,
                               fixed_point_iters=world.inversion_iters)
base = unedited_judgement(unet, schedule, judge, heldout_x_T, n_steps)  # the unedited reading, computed once
solo = {n: mean_changes(unet, schedule, editors[n][0], editors[n][1].t_edit, judge, heldout_x_T,
                        [world.attribute(n)], n_steps, base)[world.attribute(n)]
        for n in (a, b, c)}  # each editor alone, shared by both groups
groups = {f"{a} + {b}": [a, b], f"{a} + {b} + {c}": [a, b, c]}
fig, axes = plt.subplots(1, len(groups), figsize=(10, 3.2))
for ax, (title, group) in zip(axes, tqdm(groups.items(), desc="combinations")):
    report = combination_effects(unet, schedule, {n: (editors[n][0], editors[n][1].t_edit, world.attribute(n))
                                                  for n in group},
                                 judge, heldout_x_T, n_steps, base, solo)
    xs = range(len(group))
    ax.bar([x - 0.2 for x in xs], [report[n]["solo"] for n in group], width=0.4, label="alone")
    ax.bar([x + 0.2 for x in xs], [report[n]["mixed"] for n in group], width=0.4, label="in the mix")
    ax.hlines([0.75 * report[n]["solo"] for n in group], [x for x in xs], [x + 0.4 for x in xs], colors="k",
              linestyles="--", lw=1, label="the bar: 75% of alone")
    kept = [f"{report[n]['ratio']:.0%} kept" if report[n]["ratio"] == report[n]["ratio"] else "no solo effect"
            for n in group]  # (NaN: the editor alone changed nothing measurable)
    ax.set_xticks(list(xs), [f"{n}\n{k}" for n, k in zip(group, kept)], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
axes[0].set_ylabel("mean change of own attribute" if is_toy else "mean change of cos(E_I, ΔT)")
fig.tight_layout()

# %% [markdown]
# ## Exercises
# **1.** Write the combination: given the editors' Δh_i and coefficients c_i, return Σ c_i·Δh_i.

# %%
def my_mix(deltas, coefficients):
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_mixed_delta(my_mix)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_mix(deltas, coefficients):
#     return sum(c * d for c, d in zip(coefficients, deltas))
# ```
#
# </details>

# %% [markdown]
# **2. (think)** In the mix each editor edits only in its own interval [T, t_edit_i], as it was trained. What would
# happen if every editor kept editing down to the smallest t_edit of the mix instead? The shipped toy editors were
# all trained with t_edit = 400, so in the toy world both ways give the same images until you give the editors
# intervals of their own. Try it for two editors `a, b` of section 2:
# ```python
# t_edits = {a: 700, b: 400}  # a stops early, b edits on (the authors' editors differ like this by themselves)
# own = MixedEditor({n: editors[n][0] for n in t_edits}, {n: 1.0 for n in t_edits}, t_edits)
# shared = MixedEditor({n: editors[n][0] for n in t_edits}, {n: 1.0 for n in t_edits})  # all down to 400
# image_grid([generate_edited(unet, x_T, schedule, m, Intervals(400, 0, schedule.T), n_steps) for m in (own, shared)],
#            row_titles=["own intervals", "down to the\nsmallest t_edit"]);
# ```
# (Hint: notebook 05's t_edit slider shows what editing longer does to one editor.)


# %%
if not is_toy:  # what this run took on your GPU, to compare with the estimate printed at the top
    print(run_report(started))
