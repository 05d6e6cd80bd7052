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
# # 01 · Denoising diffusion (DDPM) in the toy world
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/asyrp-edu/asyrp_edu/blob/main/notebooks/01_ddpm.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/asyrp-edu/asyrp_edu/main?labpath=notebooks%2F01_ddpm.ipynb)
#
# Asyrp (Kwon et al., *Diffusion Models Already Have a Semantic Latent Space*, ICLR 2023) edits images inside a
# **frozen, pretrained** diffusion model. Before we edit anything we need that model. This notebook shows
#
# 1. the *toy world*: cartoon faces whose attributes we know exactly,
# 2. the forward process that turns a face into noise, and its schedule,
# 3. two hundred live training steps of a DDPM,
# 4. the DDPM that ships with the package, sampling new faces.
#
# It runs on any CPU in about two minutes.

# %%
# Setup: installs the package on Colab only; on Binder or your laptop it is already installed.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "asyrp-edu @ git+https://github.com/asyrp-edu/asyrp_edu"], check=True)

# %%
import tempfile

import matplotlib.pyplot as plt
import torch

from asyrp_edu import toy
from asyrp_edu.ddim import Schedule, q_sample
from asyrp_edu.exercises import check_alpha_bar, check_q_sample
from asyrp_edu.models import load_toy_ddpm
from asyrp_edu.quality import sample_from_noise
from asyrp_edu.settings import steps
from asyrp_edu.train_ddpm import train_ddpm
from asyrp_edu.viz import image_grid

torch.manual_seed(0)

# %% [markdown]
# ## 1 · The toy world
# Every face is drawn from a handful of numbers: mouth curvature (sad −1 … smiling +1), eye size, skin tone, hair
# colour and glasses, plus a small shift and the background colour. Because we drew them, we can later *measure*
# whether an edit really made a face smile. Each face also gets a caption (used by CLIP in notebook 04).

# %%
faces, attrs = toy.sample(8, seed=1)
image_grid([faces], col_titles=[f"mouth {m:+.1f}" for m in attrs["mouth"].tolist()]);
for i in range(3):
    print(toy.caption(attrs, i))

# %% [markdown]
# ## 2 · The forward process
# DDPM adds Gaussian noise in T = 1000 small steps with variances β_t, linear from 1e-4 to 0.02. Because Gaussians
# compose, we can jump straight to any t:
#
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon, \qquad \bar\alpha_t = \prod_{s\le t}(1-\beta_s)$$

# %%
schedule = Schedule.linear()
betas = torch.linspace(1e-4, 0.02, 1000)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
axes[0].plot(betas); axes[0].set_title("β_t")
axes[1].plot(schedule.alpha_bar); axes[1].set_title("ᾱ_t (signal kept)")
axes[2].semilogy(schedule.alpha_bar / (1 - schedule.alpha_bar)); axes[2].set_title("SNR = ᾱ_t / (1 − ᾱ_t)")
for ax in axes:
    ax.set_xlabel("t")
fig.tight_layout()

# %%
ts = torch.tensor([0, 50, 100, 200, 300, 500, 700, 999])
x0 = faces[:1].expand(len(ts), -1, -1, -1)
x_t = q_sample(x0, ts, torch.randn_like(x0), schedule)
image_grid([x_t], col_titles=[f"t = {t}" for t in ts.tolist()]);

# %% [markdown]
# ## 3 · Training a DDPM, live
# The network ε_θ(x_t, t) learns to predict the noise that was added: L = ‖ε − ε_θ(x_t, t)‖². We use diffusers'
# `UNet2DModel` — the same class as the CelebA-HQ model of the paper — in a small configuration whose bottleneck
# (the *h-space* of later notebooks) is 8×8, just like the real one. Two hundred steps take the loss from about 1.2
# to about 0.15; the shipped model trained for 24,000 steps (the README's "Retraining the shipped toy models" gives the
# commands).
# The shipped model also learned a second term, `train_ddpm.coarse_x0_loss`, which keeps sample colours from
# drifting; this live run uses L alone (`coarse_weight=0`), so the plot shows exactly L.

# %%
run_dir = tempfile.mkdtemp()
live = train_ddpm(run_dir, steps=steps(200, 20), batch_size=16, seed=0, coarse_weight=0)
plt.figure(figsize=(6, 3))
plt.plot(live.losses, alpha=0.4, label="loss per step")
k = max(1, len(live.losses) // 20)
plt.plot([sum(live.losses[i:i + k]) / len(live.losses[i:i + k]) for i in range(len(live.losses))], label="running mean")
plt.xlabel("step"); plt.ylabel("‖ε − ε_θ‖²"); plt.legend(); plt.title("live training");

# %% [markdown]
# ## 4 · The shipped toy DDPM
# Now the real thing: the EMA weights that ship with the package (checked against their sha256 on load), sampled
# with 50 DDIM steps (notebook 02 explains DDIM).

# %%
unet, schedule = load_toy_ddpm()
print(f"U-Net parameters: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M")
samples = sample_from_noise(unet, schedule, n=16, num_steps=steps(50, 10), seed=0)
image_grid([samples[:8], samples[8:]], title="new faces from pure noise");

# %% [markdown]
# ## Exercises
# **1.** Write ᾱ_t from the β_t. **2.** Write the forward process q(x_t | x_0). Run the check cells; they say
# whether you are right and, if not, what went wrong.

# %%
def my_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_alpha_bar(my_alpha_bar)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
#     return torch.cumprod(1 - betas, dim=0)
# ```
#
# </details>

# %%
def my_q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    # YOUR CODE HERE: replace `None` with your answer (a solution is below the check)
    return None


check_q_sample(my_q_sample)


# %% [markdown]
# <details><summary>A solution (open it after trying)</summary>
#
# ```python
# def my_q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
#     a = alpha_bar[t].view(-1, 1, 1, 1)
#     return a.sqrt() * x0 + (1 - a).sqrt() * eps
# ```
#
# </details>

# %% [markdown]
# **3. (think)** At which t has half of the signal's *variance* gone (ᾱ_t = 0.5)? Look at the plot, then check with
# `int((schedule.alpha_bar < 0.5).nonzero()[0])`.
