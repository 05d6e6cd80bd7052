"""Live steering: render functions, the widget layer's bad-input messages, uploads, and h-space measurements."""
import copy
import datetime
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from asyrp_edu import widgets
from asyrp_edu.ddim import Schedule
from asyrp_edu.delta_block import DeltaBlock
from asyrp_edu.editing import Intervals, MixedEditor, ScaledEditor, generate_edited
from asyrp_edu.hspace import h_shape, temb_dim
from asyrp_edu.properties import (combination_effects, delta_h_along_trajectory, global_delta_h, measure_linearity,
                                  mean_changes, pearson_r, timestep_cosines)
from asyrp_edu.train_asyrp import EditorConfig


def random_editor(unet, seed: int) -> DeltaBlock:
    torch.manual_seed(seed)
    block = DeltaBlock(h_shape(unet)[0], temb_dim(unet))
    torch.nn.init.normal_(block.conv2.weight, std=0.05)
    return block.eval()


@pytest.fixture
def scene(tiny_unet):
    schedule = Schedule.linear()
    config = EditorConfig("a sad face", "a smiling face", t_edit=500, num_steps=8)
    editors = {"a": (random_editor(tiny_unet, 1), config), "b": (random_editor(tiny_unet, 2), config)}
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    x_T = torch.randn(1, 3, 16, 16)
    return widgets.Scene(tiny_unet, schedule, image, x_T, editors, num_steps=4)


def test_strength_zero_is_the_unedited_image_and_strength_changes_it(scene):
    plain = generate_edited(scene.unet, scene.x_T, scene.schedule, None, Intervals(500), 4)[0].clamp(-1, 1)
    assert (widgets.render_strength(scene, "a", 0.0) - plain).abs().max() < 1e-4
    one, minus = widgets.render_strength(scene, "a", 1.0), widgets.render_strength(scene, "a", -1.0)
    assert one.shape == (3, 16, 16) and not torch.allclose(one, plain) and not torch.allclose(one, minus)
    assert scene.delta_scale("a") == 2.0  # trained with 8 steps, rendered with 4: Δh × 8/4


def test_mixer_is_the_sum_of_editors(scene):
    # (a random U-Net turns float round-off between the split and the plain forward pass into ~1e-5 differences)
    assert torch.allclose(widgets.render_mix(scene, {"a": 0.0, "b": 0.0}), widgets.render_strength(scene, "a", 0.0),
                          atol=1e-4)
    assert torch.allclose(widgets.render_mix(scene, {"a": 1.0, "b": 0.0}), widgets.render_strength(scene, "a", 1.0),
                          atol=1e-4)
    h, temb = torch.randn(2, *h_shape(scene.unet)), torch.randn(2, temb_dim(scene.unet))
    a, b = scene.editors["a"][0], scene.editors["b"][0]
    # both editors in the image: Δh = 1·a − 1.5·b, each × 8/4 (trained with 8 steps, rendered with 4)
    both = generate_edited(scene.unet, scene.x_T, scene.schedule, lambda h, e: 2 * (a(h, e) - 1.5 * b(h, e)),
                           Intervals(500), 4)[0].clamp(-1, 1)
    rendered = widgets.render_mix(scene, {"a": 1.0, "b": -1.5})
    assert torch.allclose(rendered, both, atol=1e-4)
    assert not torch.allclose(rendered, widgets.render_strength(scene, "a", 1.0), atol=1e-3)
    mix = MixedEditor({"a": a, "b": b}, {"a": 0.5, "b": -2.0})
    assert torch.allclose(mix(h, temb), 0.5 * a(h, temb) - 2.0 * b(h, temb), atol=1e-6)
    # the mix holds its editors as modules: .double() (or .to(device)) on the mix reaches both
    assert {id(p) for p in mix.parameters()} == {id(p) for p in [*a.parameters(), *b.parameters()]}
    mixed64 = copy.deepcopy(mix).double()
    assert mixed64(h.double(), temb.double()).dtype == torch.float64
    with pytest.raises(KeyError, match="available"):
        widgets.render_mix(scene, {"nope": 1.0})


def test_mixed_editors_each_edit_only_in_their_own_interval(scene):
    h, temb = torch.randn(2, *h_shape(scene.unet)), torch.randn(2, temb_dim(scene.unet))
    a, b = scene.editors["a"][0], scene.editors["b"][0]
    mix = MixedEditor({"a": a, "b": b}, {"a": 1.0, "b": 1.0}, {"a": 600, "b": 400})
    assert torch.allclose(mix.active_at(700)(h, temb), a(h, temb) + b(h, temb), atol=1e-6)
    assert torch.allclose(mix.active_at(500)(h, temb), b(h, temb), atol=1e-6)  # a's interval ended at 600
    assert mix.interval_end(1000) == 400  # the mix edits until its last editor stops
    assert MixedEditor({"a": a, "b": b}, {"a": 1.0, "b": 0.0}, {"a": 600, "b": 400}).interval_end(1000) == 600
    assert MixedEditor({"a": a}, {"a": 0.0}, {"a": 600}).interval_end(1000) == 999  # nothing edits
    # inside sampling: a mixed with t_edit 600 and run to t = 400 is a alone with t_edit 600
    x_T, steps, big = scene.x_T, 8, ScaledEditor(a, 20.0)  # 8 steps: t = 875, 750, 625, 500, 375, ...
    alone = generate_edited(scene.unet, x_T, scene.schedule, big, Intervals(600), steps)
    gated = generate_edited(scene.unet, x_T, scene.schedule, MixedEditor({"a": big}, {"a": 1.0}, {"a": 600}),
                            Intervals(400), steps)
    ungated = generate_edited(scene.unet, x_T, scene.schedule, MixedEditor({"a": big}, {"a": 1.0}), Intervals(400),
                              steps)
    off, on = (gated - alone).abs().max(), (ungated - alone).abs().max()  # on: editing on at t = 500 too
    assert off < 0.01 * on, (off, on)  # off: float round-off of the split U-Net pass on a random model
    with pytest.raises(KeyError, match="no editor named"):
        MixedEditor({"a": a}, {"a": 1.0}, {"c": 500})


def test_t_edit_and_scrubber(scene):
    short, long = widgets.render_t_edit(scene, "a", 900), widgets.render_t_edit(scene, "a", 0)
    assert not torch.allclose(short, long)
    frame = widgets.render_scrubber(scene, "a", 0)
    assert frame.shape == (3, 32, 48)
    assert torch.allclose(frame[:, :16, :16], scene.x_T[0].clamp(-1, 1))  # first column of step 0 is x_T
    assert torch.allclose(frame[:, 16:, :16], scene.x_T[0].clamp(-1, 1))  # both trajectories start there
    assert widgets.timestep_of(scene, 0) == scene.schedule.timesteps(4)[0]
    # the unedited row at step 2, by diffusers' DDIMScheduler: x_t (the step's input) and P_t (pred_original_sample)
    from diffusers import DDIMScheduler

    reference = DDIMScheduler(beta_schedule="linear", clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    reference.set_timesteps(4)
    x = scene.x_T
    with torch.no_grad():
        for t in reference.timesteps[:3]:
            x_t, out = x, reference.step(scene.unet(x, t).sample, t, x)
            x = out.prev_sample
    frame = widgets.render_scrubber(scene, "a", 2)
    assert widgets.timestep_of(scene, 2) == int(reference.timesteps[2])
    assert torch.allclose(frame[:, :16, :16], x_t[0].clamp(-1, 1), atol=1e-4)
    assert torch.allclose(frame[:, :16, 16:32], out.pred_original_sample[0].clamp(-1, 1), atol=1e-4)
    assert (frame[:, 16:, 16:32] - frame[:, :16, 16:32]).abs().max() > 1e-2  # the edited row's P_t moved


def test_bad_slider_values_are_clear_errors(scene):
    for bad in (2.5, -3.0, float("nan")):
        with pytest.raises(ValueError, match=r"\[-2.0, 2.0\]"):
            widgets.render_strength(scene, "a", bad)
    with pytest.raises(ValueError, match="t_edit"):
        widgets.render_t_edit(scene, "a", 5000)
    with pytest.raises(ValueError, match="step"):
        widgets.render_scrubber(scene, "a", 99)
    with pytest.raises(ValueError, match="strength=7"):
        widgets.render_scrubber(scene, "a", 0, strength=7)
    with pytest.raises(ValueError, match="must be a number"):
        widgets.render_strength(scene, "a", True)
    # numbers computed with numpy or torch are numbers too
    assert torch.equal(widgets.render_strength(scene, "a", np.float32(0.5)), widgets.render_strength(scene, "a", 0.5))
    assert torch.equal(widgets.render_strength(scene, "a", torch.tensor(0.5)), widgets.render_strength(scene, "a", 0.5))


def test_widgets_show_messages_and_keep_working(scene):
    from asyrp_edu import sliders

    panel = sliders.strength_widget(scene, "a")
    strength = panel.children[1]
    before = panel.image.value
    strength.value = 5.0  # set from code, outside the range: refused with a message, not clamped silently
    assert strength.value == 1.0 and "outside" in panel.message.value
    strength.value = 0.5  # the widget still works
    assert panel.message.value == "" and panel.image.value != before
    mixer = sliders.mixer_widget(scene)
    assert len(mixer.children) == 4  # two sliders, the image, the message
    scrub = sliders.scrubber_widget(scene, "a")
    scrub.children[1].value = 3
    assert "t = " in scrub.children[0].value and scrub.message.value == ""


def test_a_render_error_shows_in_the_widget_and_keeps_the_last_image(scene):
    from asyrp_edu import sliders

    fail = {"now": False}

    def render():
        if fail["now"]:
            raise ValueError("this edit needs a smaller t_edit")
        return widgets.render_strength(scene, "a", 1.0)

    slider = sliders._slider("strength")
    panel = sliders._panel(render, [slider])
    shown = panel.image.value
    fail["now"] = True
    slider.value = 0.5
    assert "this edit needs a smaller t_edit" in panel.message.value and panel.image.value == shown
    fail["now"] = False
    slider.value = 0.7  # the kernel and the widget keep working
    assert panel.message.value == ""
    shown = panel.image.value
    panel_broken = sliders._panel(lambda: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")) if fail["now"]
                                  else widgets.render_strength(scene, "a", 1.0), [slider])
    fail["now"] = True
    slider.value = 0.3  # an unexpected error also shows in the widget, with its type
    assert "RuntimeError: CUDA out of memory" in panel_broken.message.value and panel_broken.image.value == shown
    with pytest.raises(TypeError):  # a widget that cannot draw even once fails the cell that builds it
        sliders._panel(lambda: (_ for _ in ()).throw(TypeError("a bug")), [sliders._slider("strength")])
    fail["now"] = False
    tagged = sliders._panel(lambda: (_ for _ in ()).throw(KeyError("<class 'x'>")) if fail["now"]
                            else widgets.render_strength(scene, "a", 1.0), [slider])
    fail["now"] = True
    slider.value = 0.2
    assert "&lt;class" in tagged.message.value  # escaped, so the browser shows it instead of swallowing a tag


def test_sliders_render_while_dragging_only_for_small_images(scene):
    from types import SimpleNamespace

    from asyrp_edu import sliders

    assert sliders.live(scene) and sliders.strength_widget(scene, "a").children[1].continuous_update
    assert not sliders.live(SimpleNamespace(original=torch.zeros(1, 3, 256, 256)))  # seconds per render: on release


def test_widgets_default_to_an_editor_the_scene_has(scene):
    """A scene without smiling: the widgets start on its first editor; a wrong name gets the list of names."""
    from asyrp_edu import sliders

    assert sliders.strength_widget(scene).children[0].value == "a"  # the editor dropdown
    assert sliders.t_edit_widget(scene).children[0].value == 500  # editor a's t_edit
    sliders.scrubber_widget(scene)
    for make in (sliders.strength_widget, sliders.t_edit_widget, sliders.scrubber_widget):
        with pytest.raises(KeyError, match=r"available: \['a', 'b'\]"):
            make(scene, "smiling")


def test_upload_widget_inverts_a_picture_and_explains_a_bad_file(scene, tmp_path):
    from asyrp_edu import sliders

    scenes = []
    box = sliders.upload_widget(scene.unet, scene.schedule, scenes.append, editors=scene.editors, num_steps=4,
                                cache_dir=str(tmp_path))
    upload, message = box.children

    def send(data: bytes) -> None:
        upload.value = ({"name": "mine.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)

    send(b"certainly not a PNG")
    assert "not an image" in message.value and scenes == []
    send(_png("L", (40, 40), 200))  # greyscale: converted, with a note
    assert len(scenes) == 1 and "converted to RGB" in message.value and "inverted your image" in message.value
    assert upload.value == ()  # cleared, so the same file uploaded again is a new upload
    send(_png("L", (40, 40), 200))
    assert len(scenes) == 2
    assert scenes[0].original.shape == (1, 3, 16, 16) and scenes[0].x_T.shape == (1, 3, 16, 16)
    assert torch.allclose(scenes[0].original, torch.full((1, 3, 16, 16), 200 / 127.5 - 1), atol=1e-6)


def _png(mode: str, size: tuple[int, int], color=0, left_stripe=None) -> bytes:
    """A PNG of one colour; left_stripe=(width, colour) paints the leftmost columns another colour."""
    image = Image.new(mode, size, color)
    if left_stripe is not None:
        image.paste(left_stripe[1], (0, 0, left_stripe[0], size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_phone_photo_is_turned_upright_by_its_exif_rotation():
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 4, 40))  # a white stripe down the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown rotated 90° clockwise, so the left edge becomes the top
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    x, _ = widgets.load_user_image(buffer.getvalue(), 16)
    assert x[0, :, 0].mean() > 0.9 and x[0, :, -1].mean() < -0.9  # the stripe is the top row, not the left column


def test_uploaded_images_are_checked_and_converted(monkeypatch):
    x, note = widgets.load_user_image(_png("RGB", (64, 48)), 32)
    assert x.shape == (1, 3, 32, 32) and -1 <= float(x.min()) and float(x.max()) <= 1 and "48×48" in note
    # pixel values map 0 … 255 to −1 … 1: (255, 0, 128) -> (1, −1, 1/255)
    x, _ = widgets.load_user_image(_png("RGB", (40, 40), (255, 0, 128)), 32)
    assert torch.allclose(x[0, :, 5, 5], torch.tensor([1.0, -1.0, 1 / 255]), atol=1e-6)
    # the centre crop drops the 8 red columns at the left of a 64×48 image (it keeps columns 8 … 55)
    x, _ = widgets.load_user_image(_png("RGB", (64, 48), (0, 0, 255), left_stripe=(8, (255, 0, 0))), 32)
    assert float(x[0, 0].max()) == -1.0 and float(x[0, 2].min()) == 1.0
    # a transparent image becomes white, as the note says
    x, note = widgets.load_user_image(_png("RGBA", (40, 40), (0, 0, 0, 0)), 32)
    assert torch.equal(x, torch.ones_like(x)) and "white" in note
    assert "converted to RGB" in widgets.load_user_image(_png("L", (40, 40)))[1]
    # 16-bit greyscale keeps its grey: 32768 of 65535 is mid-grey (PIL's own convert would clip it to white)
    x, note = widgets.load_user_image(_png("I;16", (40, 40), 32768), 32)
    assert abs(float(x.mean())) < 0.01 and "I;16" in note
    x, _ = widgets.load_user_image(_png("I;16", (40, 40), 200), 32)  # a dark 16-bit image stays dark
    assert float(x.max()) < -0.98
    with pytest.raises(ValueError, match="not an image"):
        widgets.load_user_image(b"certainly not a PNG")
    with pytest.raises(ValueError, match="at least 16 pixels"):
        widgets.load_user_image(_png("RGB", (8, 40)))
    # colour files get no note about colour or transparency they do not lack
    x, note = widgets.load_user_image(_png("RGBA", (40, 40), (0, 0, 255, 255)), 32)  # opaque, like a screenshot
    assert "white" not in note and "greyscale" not in note and float(x[0, 2].min()) == 1.0
    buffer = io.BytesIO()
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(buffer, format="JPEG")  # red in print colours
    x, note = widgets.load_user_image(buffer.getvalue(), 32)
    assert "greyscale" not in note and float(x[0, 0].mean()) > 0.9 and float(x[0, 1:].mean()) < -0.9
    # a file over the pixel limit is refused from its header, before it is decoded (a small PNG of one colour can
    # decode to gigabytes)
    from PIL import ImageFile

    monkeypatch.setattr(widgets, "MAX_PIXELS", 1000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded before the size check"))
    with pytest.raises(ValueError, match="resize it"):
        widgets.load_user_image(_png("RGB", (40, 40)))


def test_measurements_on_a_random_editor(scene):
    unet, schedule, editor = scene.unet, scene.schedule, scene.editors["a"][0]
    x_T = torch.randn(3, 3, 16, 16)

    def judge(images):  # a stand-in for the evaluation network: mean red and mean green
        return {"red": images[:, 0].mean((1, 2)), "green": images[:, 1].mean((1, 2))}

    lin = measure_linearity(unet, schedule, editor, 500, judge, "red", x_T, num_steps=4)
    assert lin.scales == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert lin.pearson_r == pytest.approx(float(np.corrcoef(lin.scales, lin.mean_change)[0, 1]), abs=1e-9)
    # scale 1 is f_t itself, and scale 0 (which the measurement skips) really is the unedited process
    assert lin.mean_change[4] == pytest.approx(mean_changes(unet, schedule, editor, 500, judge, x_T, ["red"],
                                                            4)["red"], abs=1e-6)
    assert mean_changes(unet, schedule, ScaledEditor(editor, 0.0), 500, judge, x_T, ["red"], 4)["red"] == \
        pytest.approx(lin.mean_change[2], abs=1e-4)
    per_image = delta_h_along_trajectory(unet, schedule, editor, 500, x_T, num_steps=4)
    assert sorted(per_image) == [t for t in schedule.timesteps(4) if t >= 500][::-1]
    assert all(v.shape == (3, *h_shape(unet)) for v in per_image.values())
    flat = global_delta_h(per_image, over_timesteps=True)
    first = next(iter(flat.values()))
    assert all(torch.equal(v, first) for v in flat.values()) and first.shape == (1, *h_shape(unet))
    by_hand = sum(v.sum(0, keepdim=True) for v in per_image.values()) / (3 * len(per_image))  # over images and t
    assert torch.allclose(first, by_hand, atol=1e-6)
    kept = next(iter(global_delta_h(per_image, over_timesteps=True, keep_norm=True).values()))
    mean_length = torch.stack([v.mean(0).norm() for v in per_image.values()]).mean()
    assert kept.norm() == pytest.approx(float(mean_length), rel=1e-4)  # the averaged direction, the mean length
    assert torch.allclose(F.normalize(kept.flatten(), dim=0), F.normalize(first.flatten(), dim=0), atol=1e-5)
    ts, cos = timestep_cosines(global_delta_h(per_image))
    assert cos.shape == (len(ts), len(ts))  # its entries: test_measurements_match_hand_computations
    # a dict {t: Δh_t} edits exactly like the editor would with those Δh
    edited = generate_edited(unet, x_T[:1], schedule, {t: v[:1] for t, v in per_image.items()}, Intervals(500), 4)
    direct = generate_edited(unet, x_T[:1], schedule, editor, Intervals(500), 4)
    assert torch.allclose(edited, direct, atol=1e-4)
    combo = combination_effects(unet, schedule, {"a": (editor, 500, "red"),
                                                 "b": (scene.editors["b"][0], 500, "green")}, judge, x_T, 4)
    assert set(combo) == {"a", "b"} and set(combo["a"]) == {"solo", "mixed", "ratio"}
    h, temb = torch.randn(1, *h_shape(unet)), torch.randn(1, temb_dim(unet))
    assert torch.allclose(ScaledEditor(editor, 2.0)(h, temb), 2 * editor(h, temb))


def test_measurements_match_hand_computations(scene):
    """Each number the h-space report prints, recomputed here from plain sampling and the judge's raw readings."""
    import numpy as np

    unet, schedule, (ea, eb) = scene.unet, scene.schedule, (scene.editors["a"][0], scene.editors["b"][0])
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))

    def judge(images):
        return {"red": images[:, 0].mean((1, 2)), "green": images[:, 1].mean((1, 2))}

    plain = judge(generate_edited(unet, x_T, schedule, None, Intervals(500), 4).clamp(-1, 1))

    def change(delta_h, attribute: str) -> float:  # mean change of one attribute, sampled and judged by hand
        edited = generate_edited(unet, x_T, schedule, delta_h, Intervals(500), 4).clamp(-1, 1)
        return float((judge(edited)[attribute] - plain[attribute]).mean())

    # Pearson's r against numpy on data with offsets and both signs of correlation
    x, y = [0.3, 1.7, 2.2, 5.0, 4.1], [10.1, 9.3, 12.0, 15.5, 11.2]
    assert pearson_r(x, y) == pytest.approx(float(np.corrcoef(x, y)[0, 1]), abs=1e-9)
    assert pearson_r(x, [-v for v in y]) == pytest.approx(-float(np.corrcoef(x, y)[0, 1]), abs=1e-9)
    # linearity: scale s means Δh = s · f_t, in the order of the scales
    lin = measure_linearity(unet, schedule, ea, 500, judge, "red", x_T, num_steps=4, scales=(-1.0, 0.5, 2.0))
    hand = [change(lambda h, temb, s=s: s * ea(h, temb), "red") for s in (-1.0, 0.5, 2.0)]
    assert lin.mean_change == pytest.approx(hand, abs=1e-6) and lin.pearson_r == pytest.approx(
        float(np.corrcoef([-1.0, 0.5, 2.0], hand)[0, 1]), abs=1e-6)
    # combinations: solo is one editor alone, mixed is Δh_a + Δh_b, ratio is mixed / solo
    combo = combination_effects(unet, schedule, {"a": (ea, 500, "red"), "b": (eb, 500, "green")}, judge, x_T, 4)
    for name, editor, attribute in (("a", ea, "red"), ("b", eb, "green")):
        mixed = change(lambda h, temb: ea(h, temb) + eb(h, temb), attribute)
        assert combo[name]["solo"] == pytest.approx(change(editor, attribute), abs=1e-6)
        assert combo[name]["mixed"] == pytest.approx(mixed, abs=1e-6)
        assert combo[name]["ratio"] == pytest.approx(mixed / combo[name]["solo"], rel=1e-5)
    # consistency across timesteps: entry (i, j) is cos(Δh_{t_i}, Δh_{t_j}), timesteps from T down
    per_t = {t: torch.randn(1, 4, 2, 2) for t in (100, 700, 400)}
    ts, cos = timestep_cosines(per_t)
    assert ts == [700, 400, 100]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        expected = F.cosine_similarity(per_t[ts[i]].flatten(), per_t[ts[j]].flatten(), dim=0)
        assert float(cos[i, j]) == pytest.approx(float(expected), abs=1e-6) and cos[j, i] == cos[i, j]


def test_measurements_at_the_noise_level_say_so():
    """No variation, no correlation; a solo effect within the judge's noise, no share; a zero Δh_t, no direction."""
    from asyrp_edu.properties import share

    assert np.isnan(pearson_r([-1.0, 0.0, 1.0], [1e-8, -1e-8, 2e-8])) and np.isnan(pearson_r([1.0] * 3, [1, 2, 3]))
    with pytest.raises(ValueError, match="one length"):
        pearson_r([1.0, 2.0], [1.0])
    assert share(0.45, 0.9, 0.01) == pytest.approx(0.5) and share(-0.2, -0.4, 0.01) == pytest.approx(0.5)
    assert np.isnan(share(0.5, 1e-8, 0.01)) and np.isnan(share(0.0, 0.0))  # the toy judge's floor; none at all
    assert share(0.01, 0.02) == pytest.approx(0.5)  # no floor: a CLIP judge's small changes still make a share
    per_t = {900: torch.randn(1, 4, 2, 2), 500: torch.zeros(1, 4, 2, 2), 100: torch.randn(1, 4, 2, 2)}
    ts, cos = timestep_cosines(per_t)
    assert torch.isnan(cos[1]).all() and torch.isnan(cos[:, 1]).all() and float(cos[0, 0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="over_timesteps=True"):
        global_delta_h({900: torch.randn(2, 4, 2, 2)}, keep_norm=True)


def test_a_scaled_mix_keeps_each_editors_interval(scene):
    a, b = scene.editors["a"][0], scene.editors["b"][0]
    mix = MixedEditor({"a": a, "b": b}, {"a": 1.0, "b": 1.0}, {"a": 750, "b": 250})
    args = (scene.unet, scene.x_T, scene.schedule)
    plain = generate_edited(*args, mix, Intervals(250), 4)
    assert torch.allclose(generate_edited(*args, ScaledEditor(mix, 1.0), Intervals(250), 4), plain, atol=1e-6)
    everywhere = MixedEditor({"a": a, "b": b}, {"a": 1.0, "b": 1.0})
    assert not torch.allclose(generate_edited(*args, everywhere, Intervals(250), 4), plain, atol=1e-4)


def test_a_delta_h_dict_measured_on_another_grid_is_flagged(scene):
    measured = {t: torch.zeros(1, *h_shape(scene.unet)) for t in Schedule.linear().timesteps(10) if t >= 500}
    with pytest.warns(UserWarning, match="no entry for .* edited timesteps"):
        generate_edited(scene.unet, scene.x_T, scene.schedule, measured, Intervals(250), 4)  # 750 and 250 missing


def test_t_edit_slider_starts_at_t_boost_and_runs_are_cached_per_t_boost(scene):
    import dataclasses

    boosted = dataclasses.replace(scene, t_boost=300, cache={})
    with pytest.raises(ValueError, match=r"outside \[300, 999\]"):
        widgets.render_t_edit(boosted, "a", 100)
    from asyrp_edu import sliders

    assert sliders.t_edit_widget(boosted, "a").children[0].min == 300
    # an editor trained to stop above t_boost keeps its own t_edit within reach (the scene's editors: t_edit 500)
    assert widgets.lowest_t_edit(dataclasses.replace(scene, t_boost=600, cache={}), "a") == 500
    first = widgets.trajectories(boosted, "a", 1.0)["edited"][-1][1].prev_sample
    boosted.t_boost = 0
    again = widgets.trajectories(boosted, "a", 1.0)["edited"][-1][1].prev_sample
    assert not torch.allclose(first, again)  # not the runs cached with boosting


def test_scene_inverts_as_its_editors_were_trained(tiny_unet, tmp_path):
    schedule = Schedule.linear()
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    plain = EditorConfig("a sad face", "a smiling face", t_edit=500, num_steps=4)
    iterated = EditorConfig("a sad face", "a smiling face", t_edit=500, num_steps=4, inversion_iters=2)
    scenes = [widgets.make_scene(tiny_unet, schedule, image, num_steps=4, cache_dir=str(tmp_path),
                                 editors={"a": (random_editor(tiny_unet, 1), config)}) for config in (plain, iterated)]
    assert len(list(tmp_path.glob("inversion_*"))) == 2  # cached apart
    assert not torch.allclose(scenes[0].x_T, scenes[1].x_T)
    with pytest.raises(ValueError, match="differently inverted"):
        widgets.make_scene(tiny_unet, schedule, image, num_steps=4, cache_dir=str(tmp_path),
                           editors={"a": (random_editor(tiny_unet, 1), plain),
                                    "b": (random_editor(tiny_unet, 2), iterated)})


def test_a_float32_photo_is_inverted_in_the_unets_precision(tiny_unet, tmp_path):
    """An upload arrives as float32; a float64 (or half-precision) U-Net inverts it in its own dtype."""
    tiny_unet.double()
    config = EditorConfig("a sad face", "a smiling face", t_edit=500, num_steps=4)
    scene = widgets.make_scene(tiny_unet, Schedule.linear(), torch.rand(1, 3, 16, 16) * 2 - 1, num_steps=4,
                               cache_dir=str(tmp_path), editors={"a": (random_editor(tiny_unet, 1).double(), config)})
    assert scene.x_T.dtype == torch.float64


def test_boosted_scene_renders_the_same_noise_every_time(scene):
    import dataclasses

    boosted = dataclasses.replace(scene, t_boost=300, cache={})
    first, again = widgets.render_strength(boosted, "a", 1.0), widgets.render_strength(boosted, "a", 1.0)
    assert torch.equal(first, again)  # a slider move changes only the edit, not the boosting noise
    assert not torch.allclose(first, widgets.render_strength(scene, "a", 1.0))  # η = 1 below t_boost
    assert widgets.render_t_edit(boosted, "a", 300).shape == first.shape  # the lowest t_edit: edits to t_boost


def test_widget_images_are_sent_at_display_size():
    """A 32² toy face is enlarged × 6 to the panel's 192 px; a 256² photo goes as it is, not as a 1536² PNG."""
    for side, width in ((32, 192), (256, 256)):
        png = Image.open(io.BytesIO(widgets.to_png(torch.zeros(3, side, side))))
        assert png.size == (width, width)
    assert Image.open(io.BytesIO(widgets.to_png(torch.zeros(3, 32, 32), upscale=2))).size == (64, 64)
