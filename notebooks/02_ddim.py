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
# # 02 · DDIM: P_t, D_t, η and inversion
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asyrp-edu/asyrp_edu/blob/main/notebooks/02_ddim.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/asyrp-edu/asyrp_edu/main?labpath=notebooks%2F02_ddim.ipynb)
#
# Asyrp lives inside one DDIM step (Song et al. 2021; Kwon et al. 2023, eq. 2):
#
# $$x_{t-1} = \sqrt{\bar\alpha_{t-1}}\;\underbrace{\frac{x_t-\sqrt{1-\bar\alpha_t}\,\varepsilon}{\sqrt{\bar\alpha_t}}}_{P_t(\varepsilon)\text{: predicted }x_0}
#   \;+\; \underbrace{\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\varepsilon}_{D_t(\varepsilon)\text{: direction to }x_t} \;+\; \sigma_t z$$
#
# with $\sigma_t = \eta\sqrt{(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)}\sqrt{1-\bar\alpha_t/\bar\alpha_{t-1}}$. With η = 0 the
# step is deterministic, which lets us *invert* a real image into the noise x_T that regenerates it. Asyrp later feeds
# an edited ε to P_t only; here we look at the two terms on their own.

# %%
# Setup: installs the package on Colab only; on Binder or your laptop it is already installed.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "asyrp-edu @ git+https://github.com/asyrp-edu/asyrp_edu"], check=True)

# %%
import time

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm

from asyrp_edu.ddim import INVERSION_FIXED_POINT_ITERS, ddim_generate, ddim_invert, unet_noise_model
from asyrp_edu.exercises import check_direction_to_xt, check_predict_x0
from asyrp_edu.settings import run_report, smoke, steps
from asyrp_edu.viz import image_grid
from asyrp_edu.world import load_world

WORLD = None  # "toy", "celeba_hq", "church", "bedroom", or a local model folder; None = toy without a GPU
world = load_world(WORLD)
if world.name != "toy":  # U-Net passes counted by benchmarks/real_unet_flops.py; not yet timed on a T4
    print("expected on a Colab T4: 5 to 6 minutes for this notebook (counted by benchmarks/real_unet_flops.py), "
          "under 2 GB of GPU memory")
started = time.time()
unet, schedule, size, device = world.unet, world.schedule, world.image_size, world.device
eps_model = unet_noise_model(unet)
real = world.name != "toy"

# %% [markdown]
# ## 1 · P_t and D_t along the trajectory
# We sample one image (a face in the toy world) with 50 steps and keep, at every step, x_t, the predicted clean image
# P_t and the direction D_t. Early on P_t is a blurry average of what the model draws (faces, churches, bedrooms); the
# details settle as t falls. D_t carries the noise that is left.

# %%
n_steps = steps(50, 10)
x_T = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(7)).to(device)
x0, trajectory = ddim_generate(eps_model, x_T, schedule, num_steps=n_steps, return_trajectory=True)
pick = [trajectory[i] for i in torch.linspace(0, len(trajectory) - 1, 8).long().tolist()]
image_grid([torch.cat([o.prev_sample for _, o in pick]).cpu(), torch.cat([o.P_t for _, o in pick]).cpu(),
            torch.cat([o.D_t / o.D_t.abs().amax().clamp(min=1e-8) for _, o in pick]).cpu()],
           row_titles=["x_{t-1}", "P_t", "D_t (scaled)"], col_titles=[f"t = {t}" for t, _ in pick]);

# %%
ts = [t for t, _ in trajectory]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(ts, [float(o.P_t.std()) for _, o in trajectory], label="std of P_t")
ax.plot(ts, [float(o.D_t.std()) for _, o in trajectory], label="std of D_t")
ax.invert_xaxis(); ax.set_xlabel("t (sampling runs from left to right)"); ax.set_ylabel("standard deviation")
ax.set_title("P_t gains detail while D_t shrinks", fontsize=10); ax.legend();

# %% [markdown]
# ## 2 · From DDIM (η = 0) to DDPM-like sampling (η = 1)
# Same starting noise, same model; only η changes. With η > 0 fresh noise σ_t z enters every step and D_t shrinks
# to make room for it. Asyrp uses η = 1 near the end of sampling ("quality boosting", notebook 04).

# %%
etas = [0.0, 0.25, 0.5, 0.75, 1.0]
x_T = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(3)).to(device)
rows = [ddim_generate(eps_model, x_T, schedule, num_steps=n_steps, eta=eta,
                      generator=torch.Generator().manual_seed(0), progress=False) for eta in etas]
image_grid([r.cpu() for r in rows], row_titles=[f"η = {eta}" for eta in etas]);

# %% [markdown]
# ## 3 · Inversion and reconstruction
# Running the deterministic step backwards maps a real face x_0 to an x_T that DDIM turns back into (almost) the
# same face. Plain DDIM inversion (the authors' code, diffusers' `DDIMInverseScheduler`) goes from s up to t with
# ε_θ(x_s, s), but sampling comes back down from t with ε_θ(x_t, t): the two differ a little, and the error shrinks
# as the number of steps grows. `fixed_point_iters` re-solves each step with ε_θ(x_t, t) of the current guess
# (one more U-Net pass per iteration), so sampling retraces the inversion. The toy world's editors were trained on
# faces inverted with `INVERSION_FIXED_POINT_ITERS` = 2 iterations, the authors' editors on plain inversions; each
# editor is applied to images inverted its way. Inversion and reconstruction are never clipped; clipping P_t to
# [−1, 1] is only for sampling from pure noise.

# %%
faces = world.images(4 if real else 8)  # held-out toy faces, or (real world) the model's own samples
rows = []
for n in tqdm([5, 10] if smoke() else [5, 10, 20, 40] if real else [5, 10, 20, 40, 100], desc="step counts"):
    errors = {}
    for iters in (0, INVERSION_FIXED_POINT_ITERS):
        x_T = ddim_invert(eps_model, faces, schedule, num_steps=n, progress=False, fixed_point_iters=iters)
        recon = ddim_generate(eps_model, x_T, schedule, num_steps=n, clip_x0=False, progress=False)
        errors[iters] = float((recon - faces).pow(2).mean())
    rows.append((n, errors, recon))
print(f"{'steps':>6} | MSE, plain inversion | MSE, {INVERSION_FIXED_POINT_ITERS} fixed-point iterations")
for n, errors, _ in rows:
    print(f"{n:>6} | {errors[0]:20.6f} | {errors[INVERSION_FIXED_POINT_ITERS]:.6f}")
plt.figure(figsize=(5, 3))
for iters, label in ((0, "plain DDIM inversion"), (INVERSION_FIXED_POINT_ITERS, "fixed-point inversion")):
    plt.loglog([n for n, _, _ in rows], [e[iters] for _, e, _ in rows], "o-", label=label)
plt.xlabel("DDIM steps"); plt.ylabel("MSE (images in [−1, 1])"); plt.title("inversion + reconstruction error")
plt.legend();

# %%
image_grid([faces[:8].cpu()] + [r[:8].cpu() for _, _, r in rows],
           row_titles=["original"] + [f"{n} steps" for n, _, _ in rows]);

# %% [markdown]
# ## Exercises
# **1.** Write P_t. **2.** Write D_t (with σ_t). The checks say right or wrong, and why.

# %%
def my_predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_predict_x0(my_predict_x0)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
#     return (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t ** 0.5
# ```
#
# </details>

# %%
def my_direction_to_xt(eps: torch.Tensor, alpha_bar_prev: float, sigma: float) -> torch.Tensor:
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_direction_to_xt(my_direction_to_xt)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_direction_to_xt(eps: torch.Tensor, alpha_bar_prev: float, sigma: float) -> torch.Tensor:
#     return (1 - alpha_bar_prev - sigma ** 2) ** 0.5 * eps
# ```
#
# </details>

# %% [markdown]
# **3. (think)** Why does inversion need η = 0? Try `ddim_generate(..., eta=1.0)` on an inverted x_T and compare.


# %%
if real:  # what this run took on your GPU, to compare with the estimate printed at the top
    print(run_report(started))
