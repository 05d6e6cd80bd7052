"""The traced U-Net that the widgets render with gives the eager model's numbers, and is really the one that runs."""
import warnings

import pytest
import torch
from torch.testing import assert_close

from asyrp_edu import hspace, shared_skips, widgets
from asyrp_edu.ddim import Schedule
from asyrp_edu.editing import Intervals, ScaledEditor, generate_edited
from asyrp_edu.traced_unet import TracedUNet, trace_for_rendering
from tests.test_hspace import CONFIGS, _random_f_t, _unet

EXACT = dict(atol=1e-6, rtol=0.0)
UNCONDITIONAL = [name for name, config in CONFIGS.items() if "num_class_embeds" not in config]


@pytest.mark.parametrize("name", UNCONDITIONAL)
def test_halves_and_full_pass_match_the_eager_model(name):
    unet = _unet(CONFIGS[name])
    traced = TracedUNet(unet)
    size = unet.config.sample_size
    f_t = _random_f_t(hspace.h_shape(unet)[0], hspace.temb_dim(unet))
    with torch.no_grad():
        for batch, t in ((1, 700), (2, torch.tensor([3, 700])), (1, 40)):
            x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
            assert_close(traced(x, t).sample, unet(x, t).sample, **EXACT)
            for share in (None, True):  # these inputs are too small to share skips unless told to (shared_skips)
                eager = hspace.asymmetric_eps(unet, x, t, f_t, share_skips=share)
                for got, want in zip(hspace.asymmetric_eps(traced, x, t, f_t, share_skips=share), eager):
                    assert_close(got, want, **EXACT)
    # one graph per half and input shape was traced and replayed: the eager path did not answer for it
    # (NCSN++'s skip blocks always decode [h_t ; h_t + Δh_t] as one plain batch; the others share when told to)
    pairs = {"decode", "decode_pair"} if shared_skips.supports(unet) else {"decode"}
    assert {key[0] for key in traced.graphs} == {"encode", "full"} | pairs
    assert all(isinstance(graph, torch.jit.ScriptModule) for graph in traced.graphs.values())


def test_edited_sampling_matches_the_eager_model_step_for_step(tiny_unet):
    traced, schedule = TracedUNet(tiny_unet), Schedule.linear()
    editor = ScaledEditor(_random_f_t(hspace.h_shape(tiny_unet)[0], hspace.temb_dim(tiny_unet)), 1.5)
    x_T = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        runs = [generate_edited(model, x_T, schedule, editor, Intervals(500, 200), 8,
                                generator=torch.Generator().manual_seed(0), return_trajectory=True)
                for model in (tiny_unet, traced)]
    (x_eager, steps_eager), (x_traced, steps_traced) = runs
    assert_close(x_traced, x_eager, **EXACT)
    assert [kind for _, kind, _ in steps_traced] == ["edit"] * 4 + ["ddim"] * 2 + ["boost"] * 2
    for (_, _, a), (_, _, b) in zip(steps_traced, steps_eager):
        assert_close(a.P_t, b.P_t, **EXACT)
        assert_close(a.D_t, b.D_t, **EXACT)
    assert len(traced.graphs) == 3  # encoder (1), decoder (2) and full pass (1): shapes repeat, nothing retraced


def test_scenes_render_traced_on_a_cpu_with_the_eager_image(tiny_unet):
    schedule = Schedule.linear()
    editors = {"a": (_random_f_t(hspace.h_shape(tiny_unet)[0], hspace.temb_dim(tiny_unet)),
                     widgets.EditorConfig("a sad face", "a smiling face", t_edit=500, num_steps=8))}
    scene = widgets.Scene(tiny_unet, schedule, torch.zeros(1, 3, 16, 16), torch.randn(1, 3, 16, 16), editors,
                          num_steps=4, renderer=trace_for_rendering(tiny_unet))
    assert isinstance(scene.renderer, TracedUNet)
    eager = widgets.Scene(**{**scene.__dict__, "renderer": None})
    for strength in (-2.0, 0.7):
        assert_close(widgets.render_strength(scene, "a", strength), widgets.render_strength(eager, "a", strength),
                     **EXACT)
    assert scene.renderer.graphs


def test_models_that_cannot_be_traced_render_eagerly(tiny_unet, monkeypatch):
    conditional = _unet(CONFIGS["class_learned"])
    assert trace_for_rendering(conditional) is conditional  # class labels: the model itself
    large = _unet(CONFIGS["celeba_like"])  # 64²: compute-bound, not worth a trace
    assert trace_for_rendering(large) is large
    with pytest.raises(ValueError, match="unconditional"):
        TracedUNet(conditional)
    with pytest.raises(TypeError, match="UNet2DModel"):
        TracedUNet(torch.nn.Conv2d(3, 3, 1))

    def no_tracing(*args, **kwargs):
        raise RuntimeError("no TorchScript in this torch")

    monkeypatch.setattr(torch.jit, "trace", no_tracing)
    traced, x = TracedUNet(tiny_unet), torch.randn(1, 3, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            assert_close(traced(x, 300).sample, tiny_unet(x, 300).sample, **EXACT)
    assert any("rendering eagerly" in str(w.message) for w in caught)
