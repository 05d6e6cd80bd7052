"""h-space: encode/decode replays UNet2DModel.forward, and the asymmetric step edits P_t only."""
import pytest
import torch
from torch.testing import assert_close

from asyrp_edu import hspace, shared_skips
from asyrp_edu.ddim import Schedule, ddim_sigma, ddim_step, direction_to_xt, predict_x0
from asyrp_edu.delta_block import DeltaBlock
from asyrp_edu.models import CELEBA_HQ_UNET_CONFIG, TOY_UNET_CONFIG

TOL = dict(atol=1e-5, rtol=0.0)

# CompVis/ldm-celebahq-256's U-Net (it runs on the 64² VQ latents): h = (B, 896, 8, 8). Built on "meta" below only.
LDM_CELEBA_HQ_UNET_CONFIG = dict(
    sample_size=64, in_channels=3, out_channels=3, layers_per_block=2, attention_head_dim=32,
    block_out_channels=(224, 448, 672, 896),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
)

# Tiny versions of each family, all with the real block types (inputs of sample_size²).
CONFIGS = {
    "toy": dict(TOY_UNET_CONFIG, sample_size=16),  # h (B, 96, 4, 4)
    "celeba_like": dict(CELEBA_HQ_UNET_CONFIG, sample_size=64, norm_num_groups=8,
                        block_out_channels=(8, 8, 16, 16, 32, 32)),  # six levels, h (B, 32, 2, 2)
    "ldm_like": dict(LDM_CELEBA_HQ_UNET_CONFIG, sample_size=32, norm_num_groups=8, attention_head_dim=8,
                     block_out_channels=(16, 32, 48, 64)),  # h (B, 64, 4, 4)
    # NCSN++-style: skip branches, Fourier time features (ε / σ at the end), inputs in [0, 1]
    "skip_fourier": dict(sample_size=16, block_out_channels=(32, 32, 64), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"),
                         up_block_types=("SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"),
                         time_embedding_type="fourier", center_input_sample=True, attention_head_dim=None),
    # a learned time table, scale-shift resnets and a class embedding
    "class_learned": dict(TOY_UNET_CONFIG, sample_size=16, time_embedding_type="learned", num_train_timesteps=1000,
                          num_class_embeds=4, resnet_time_scale_shift="scale_shift"),
}


def _unet(config: dict):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(**config).eval().requires_grad_(False)


@pytest.fixture(scope="module", params=list(CONFIGS))
def case(request):
    """(name, unet, x, t, class_labels) for each tiny config, batch 2 with two different timesteps."""
    unet = _unet(CONFIGS[request.param])
    size = unet.config.sample_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 3]) if unet.class_embedding is not None else None
    return request.param, unet, x, torch.tensor([3, 700]), labels


@pytest.fixture(scope="module")
def toy():
    """The toy U-Net at 16² with one input: (unet, x_t)."""
    return _unet(CONFIGS["toy"]), torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def _mid_block_io(unet, x, t, labels=None):
    """h_t and temb as the real forward pass sees them at the mid block."""
    seen = {}
    handle = unet.mid_block.register_forward_hook(lambda m, inputs, out: seen.update(h=out, emb=inputs[1]))
    try:
        eps = unet(x, t, labels).sample
    finally:
        handle.remove()
    return eps, seen["h"], seen["emb"]


def _eps_with_added_h(unet, x, t, labels, add) -> torch.Tensor:
    """ε from one full forward pass with h_t ← h_t + add(h_t, temb), written here rather than taken from hspace."""
    handle = unet.mid_block.register_forward_hook(lambda m, inputs, out: out + add(out, inputs[1]))
    try:
        return unet(x, t, labels).sample
    finally:
        handle.remove()


def _random_f_t(channels: int, temb_dim: int) -> DeltaBlock:
    """A DeltaBlock whose conv2 is not zero, so that Δh_t = f_t(h_t, temb) really depends on h_t and t."""
    torch.manual_seed(3)
    f_t = DeltaBlock(channels, temb_dim)
    torch.nn.init.normal_(f_t.conv2.weight, std=0.1)
    return f_t.eval().requires_grad_(False)


@torch.no_grad()
def test_decode_of_encode_equals_forward(case):
    name, unet, x, t, labels = case
    eps, h, emb = _mid_block_io(unet, x, t, labels)
    enc = hspace.encode(unet, x, t, labels)
    assert_close(enc.h, h, **TOL)
    assert_close(enc.emb, emb, **TOL)
    assert enc.h.shape[1:] == hspace.h_shape(unet), name
    assert_close(hspace.decode(unet, enc), eps, **TOL)
    # a scalar timestep is broadcast as UNet2DModel does
    assert_close(hspace.decode(unet, hspace.encode(unet, x, 500, labels)), unet(x, 500, labels).sample, **TOL)


@torch.no_grad()
def test_every_block_changes_eps_beyond_the_tolerance(toy):
    """So the round trip above would fail if encode or decode skipped a block or got h wrong."""
    unet, x = toy
    enc = hspace.encode(unet, x, 400)
    reference = hspace.decode(unet, enc)
    assert (hspace.decode(unet, enc, 1e-2 * torch.randn_like(enc.h)) - reference).abs().max() > 1e-3
    # scale one weight per block by 1.1 (a constant shift would be undone by the next GroupNorm)
    for i, block in enumerate([*unet.up_blocks, unet.conv_norm_out, unet.conv_out]):
        weight = block.resnets[-1].conv2.weight if hasattr(block, "resnets") else block.weight
        saved = weight.clone()
        weight.mul_(1.1)
        changed = hspace.decode(unet, enc)
        weight.copy_(saved)
        assert (changed - reference).abs().max() > 1e-3, f"block {i}: {type(block).__name__}"
    weight = unet.mid_block.resnets[-1].conv2.weight
    saved = weight.clone()
    weight.mul_(1.1)
    changed_h = hspace.encode(unet, x, 400).h
    weight.copy_(saved)
    assert (changed_h - enc.h).abs().max() > 1e-3
    assert_close(hspace.decode(unet, hspace.encode(unet, x, 400)), reference, **TOL)  # all restored


@torch.no_grad()
def test_temb_is_the_embedding_the_resnets_see(case):
    name, unet, x, t, labels = case
    _, _, emb = _mid_block_io(unet, x, t, labels)
    assert_close(hspace.temb(unet, t, 2, labels), emb, **TOL)
    assert emb.shape == (2, hspace.temb_dim(unet))


@torch.no_grad()
@pytest.mark.parametrize("batched, share_skips", [(True, True), (True, False), (True, None), (False, False)])
def test_asymmetric_eps_matches_two_full_passes(case, batched, share_skips):
    name, unet, x, t, labels = case
    h_shape, temb_dim = hspace.h_shape(unet), hspace.temb_dim(unet)
    f_t = _random_f_t(h_shape[0], temb_dim)
    delta = torch.randn(1, *h_shape, generator=torch.Generator().manual_seed(4))  # broadcast over the batch
    for delta_h in (delta, f_t):
        eps, eps_edit, h = hspace.asymmetric_eps(unet, x, t, delta_h, labels, batched, share_skips)
        ref_eps, ref_edit = hspace.two_pass_eps(unet, x, t, delta_h, labels)
        assert_close(eps, ref_eps, **TOL)
        assert_close(eps_edit, ref_edit, **TOL)
        # f_t sees h_t and the U-Net's own temb of this t: Δh_t = f_t(h_t, temb)
        by_hand = _eps_with_added_h(unet, x, t, labels, (lambda h, emb: delta) if delta_h is delta else f_t)
        assert_close(eps_edit, by_hand, **TOL)
        assert_close(h, _mid_block_io(unet, x, t, labels)[1], **TOL)
        assert (eps_edit - eps).abs().max() > 1e-3, name  # the edit does something


def test_shared_skips_cover_every_plain_up_block(case):
    name, unet, *_ = case
    # NCSN++'s skip blocks carry an image branch this path does not replay: they decode as one plain 2B batch
    assert shared_skips.supports(unet) == (name != "skip_fourier")


def test_skips_are_shared_by_default_only_where_it_pays(monkeypatch):
    unet = _unet(CONFIGS["toy"])  # 32 channels at 16²: the skip of 32 images holds 2^18 values, that of 31 fewer
    calls = []
    monkeypatch.setattr(hspace, "decode_pair", lambda unet, enc, h_edit: calls.append(len(enc.h)) or
                        torch.zeros(2 * len(enc.h), 3, 16, 16))
    with torch.no_grad():
        for batch in (31, 32):
            hspace.asymmetric_eps(unet, torch.randn(batch, 3, 16, 16), 500, torch.ones(1, *hspace.h_shape(unet)))
    assert calls == [32] and shared_skips.MIN_SKIP_VALUES == 32 * 32 * 16 * 16


@torch.no_grad()
def test_shared_skips_match_the_plain_decoder_when_groups_straddle_the_concat(monkeypatch):
    # e.g. 32 + 16 channels in 8 groups of 6: the group of channels 30-35 holds both a and s (k = 36 > C_a = 32)
    unet = _unet(CONFIGS["celeba_like"])
    splits, resnet_pair = [], shared_skips.resnet_pair

    def spy(resnet, a, s, emb2):
        splits.append((a.shape[1], (a.shape[1] + s.shape[1]) // resnet.norm1.num_groups))  # (C_a, channels a group)
        return resnet_pair(resnet, a, s, emb2)

    monkeypatch.setattr(shared_skips, "resnet_pair", spy)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    enc = hspace.encode(unet, x, torch.tensor([5, 400, 990]))
    h_edit = enc.h + torch.randn_like(enc.h)
    eps, eps_edit = hspace.decode_pair(unet, enc, h_edit).chunk(2)
    assert any(c_a % per_group for c_a, per_group in splits)  # a straddling group really was met
    assert_close(eps, hspace.decode(unet, enc), **TOL)
    assert_close(eps_edit, hspace.decode(unet, enc, h_edit - enc.h), **TOL)


def test_shared_skips_pass_gradients_to_f_t(toy):
    unet, x = toy
    f_t = _random_f_t(*hspace.h_shape(unet)[:1], hspace.temb_dim(unet)).requires_grad_(True)
    _, eps_edit, _ = hspace.asymmetric_eps(unet, x, 500, f_t, share_skips=True)
    _, ref_edit = hspace.two_pass_eps(unet, x, 500, f_t)
    grad = torch.autograd.grad(eps_edit.square().sum(), f_t.conv2.weight)[0]
    ref = torch.autograd.grad(ref_edit.square().sum(), f_t.conv2.weight)[0]
    assert grad.abs().max() > 0
    assert_close(grad, ref, atol=1e-5, rtol=1e-4)


def test_one_pass_after_the_other_gives_f_t_the_same_gradient_and_the_unedited_pass_no_graph(toy):
    """batched=False (training on a GPU): the unedited decoder pass keeps nothing for backward."""
    unet, x = toy  # frozen, as in training
    f_t = _random_f_t(*hspace.h_shape(unet)[:1], hspace.temb_dim(unet)).requires_grad_(True)
    eps, eps_edit, _ = hspace.asymmetric_eps(unet, x, 500, f_t, batched=False)
    assert eps.grad_fn is None and eps_edit.grad_fn is not None
    _, ref_edit = hspace.two_pass_eps(unet, x, 500, f_t)
    grad = torch.autograd.grad(eps_edit.square().sum(), f_t.conv2.weight)[0]
    ref = torch.autograd.grad(ref_edit.square().sum(), f_t.conv2.weight)[0]
    assert grad.abs().max() > 0
    assert_close(grad, ref, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_two_pass_reference_adds_delta_h_once(toy):
    unet, x = toy
    enc = hspace.encode(unet, x, 300)
    delta = torch.randn_like(enc.h)
    eps, eps_edit = hspace.two_pass_eps(unet, x, 300, delta)
    assert_close(eps_edit, hspace.decode(unet, enc, delta), **TOL)
    assert_close(unet(x, 300).sample, eps, **TOL)  # the hook is gone afterwards


@torch.no_grad()
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_asymmetric_step_edits_P_t_only(toy, eta):
    unet, x = toy
    schedule, t, t_prev = Schedule.linear(), 600, 560
    noise = torch.randn_like(x) if eta else None
    delta = 0.5 * torch.randn(1, *hspace.h_shape(unet), generator=torch.Generator().manual_seed(5))
    eps, eps_edit = hspace.two_pass_eps(unet, x, t, delta)
    plain = ddim_step(x, eps, eps, t, t_prev, schedule, eta, noise)
    asym = hspace.asymmetric_step(unet, x, t, t_prev, schedule, delta, eta, noise)
    sym = hspace.asymmetric_step(unet, x, t, t_prev, schedule, delta, eta, noise, symmetric=True)

    # asymmetric: D_t as in the plain step, P_t from the edited ε
    assert_close(asym.D_t, plain.D_t, **TOL)
    assert_close(asym.P_t, predict_x0(x, eps_edit, schedule.at(t)), **TOL)
    assert (asym.P_t - plain.P_t).abs().max() > 1e-3
    sigma = ddim_sigma(schedule.at(t), schedule.at(t_prev), eta)
    expected = schedule.at(t_prev) ** 0.5 * asym.P_t + asym.D_t + (sigma * noise if eta else 0.0)
    assert_close(asym.prev_sample, expected, **TOL)

    # symmetric: the edited ε in both terms, so D_t moves too and x_{t-1} differs from the asymmetric one
    assert_close(sym.P_t, asym.P_t, **TOL)
    assert_close(sym.D_t, direction_to_xt(eps_edit, schedule.at(t_prev), sigma), **TOL)
    assert (sym.D_t - asym.D_t).abs().max() > 1e-3
    assert (sym.prev_sample - asym.prev_sample).abs().max() > 1e-3

    # no edit: exactly the plain DDIM step
    none = hspace.asymmetric_step(unet, x, t, t_prev, schedule, None, eta, noise)
    assert_close(none.prev_sample, plain.prev_sample, **TOL)


@torch.no_grad()
@pytest.mark.parametrize("config, x_size, h_shape", [
    (CELEBA_HQ_UNET_CONFIG, 256, (512, 8, 8)),
    (LDM_CELEBA_HQ_UNET_CONFIG, 64, (896, 8, 8)),
])
def test_full_size_configs_on_meta_device(config, x_size, h_shape):
    """The real CelebA-HQ DDPM and LDM U-Nets, built without memory or compute: shapes only."""
    from diffusers import UNet2DModel

    with torch.device("meta"):
        unet = UNet2DModel(**config)
        enc = hspace.encode(unet, torch.empty(1, 3, x_size, x_size), 10)
        eps = hspace.decode(unet, enc, torch.empty(1, *h_shape))
    assert tuple(enc.h.shape) == (1, *h_shape) == (1, *hspace.h_shape(unet))
    assert tuple(enc.emb.shape) == (1, h_shape[0]) == (1, hspace.temb_dim(unet))
    assert tuple(eps.shape) == (1, 3, x_size, x_size)


@torch.no_grad()
def test_clear_errors(toy):
    unet, x = toy
    with pytest.raises(ValueError, match=r"does not broadcast.*96 channels"):
        hspace.decode(unet, hspace.encode(unet, x, 10), torch.zeros(1, 512, 4, 4))
    with pytest.raises(ValueError, match="96 channels"):
        hspace.asymmetric_eps(unet, x, 10, DeltaBlock(512, 512))  # a CelebA-HQ-sized f_t
    with pytest.raises(TypeError, match="UNet2DModel"):
        hspace.encode(torch.nn.Conv2d(3, 3, 1), x, 10)
    with pytest.raises(ValueError, match="class_labels"):
        hspace.encode(_unet(CONFIGS["class_learned"]), x, 10)
    with pytest.raises(ValueError, match="class_labels"):
        hspace.encode(unet, x, 10, class_labels=torch.tensor([0]))
    unet.register_to_config(time_embedding_type="bogus")
    try:
        with pytest.raises(ValueError, match="time_embedding_type='bogus'"):
            hspace.encode(unet, x, 10)
    finally:
        unet.register_to_config(time_embedding_type="positional")
