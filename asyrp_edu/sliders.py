"""ipywidgets around the render functions of `asyrp_edu.widgets` (core ipywidgets only, so Colab works)."""
from __future__ import annotations

import html
from typing import Callable

import ipywidgets as W
import torch
import traitlets

from .widgets import DISPLAY_WIDTH, STRENGTH_RANGE, Scene, check_edit, load_user_image, lowest_t_edit, make_scene, \
    render_mix, render_scrubber, render_strength, render_t_edit, timestep_of, to_png


class _Rejecting:
    """Mixin: a value set from code outside [min, max] is refused with a message (ipywidgets would clamp silently)."""

    on_reject: Callable[[str], None] | None = None

    @traitlets.validate("value")
    def _validate_value(self, proposal):
        value = proposal["value"]
        if self.min <= value <= self.max:
            return value
        if self.on_reject is not None:
            self.on_reject(f"{self.description}={value} is outside [{self.min}, {self.max}]; kept {self.value}")
        return self.value


class CheckedFloatSlider(_Rejecting, W.FloatSlider):
    """A FloatSlider that refuses out-of-range values with a message instead of clamping."""


class CheckedIntSlider(_Rejecting, W.IntSlider):
    """An IntSlider that refuses out-of-range values with a message instead of clamping."""


def _warning(text: str) -> str:
    """A message line in red, its text escaped (an error may contain '<' and '>')."""
    return f"<span style='color:#b00'>⚠ {html.escape(text)}</span>"


def _panel(render: Callable[[], torch.Tensor], controls: list[W.Widget], upscale: int | None = None) -> W.VBox:
    """Controls, an image and a message line; every control change re-renders, errors show as the message."""
    image, message = W.Image(format="png", layout=W.Layout(width=f"{DISPLAY_WIDTH}px")), W.HTML()

    def update(_=None) -> None:
        try:
            image.value = to_png(render(), upscale)
            message.value = ""
        except (ValueError, KeyError) as err:  # bad input: say what to do, keep the last good image
            message.value = _warning(str(err))
        except Exception as err:  # anything else (out of GPU memory, say): shown here, not lost in the widget log
            message.value = _warning(f"{type(err).__name__}: {err}")

    def reject(text: str) -> None:
        message.value = _warning(text)

    for control in controls:
        control.observe(update, names="value")
        if isinstance(control, _Rejecting):
            control.on_reject = reject
    image.value = to_png(render(), upscale)  # the first render: an error here fails the cell that builds the widget
    box = W.VBox([*controls, image, message])
    box.update, box.image, box.message = update, image, message  # for tests and notebooks
    return box


LIVE_MAX_SIDE = 64  # images up to this side render in a blink on a CPU (toy: 0.2 s); larger ones take seconds


def live(scene: Scene) -> bool:
    """Re-render while a slider is dragged (small images), or only when it is let go (a 256² model: seconds)."""
    return scene.original.shape[-1] <= LIVE_MAX_SIDE


def _slider(description: str, value: float = 1.0, low: float = STRENGTH_RANGE[0],
            high: float = STRENGTH_RANGE[1], step: float = 0.1, continuous: bool = True) -> CheckedFloatSlider:
    """A checked slider; continuous: render while dragging (else when released, so renders do not queue up)."""
    return CheckedFloatSlider(value=value, min=low, max=high, step=step, description=description,
                              continuous_update=continuous, style={"description_width": "initial"})


def _chosen_edit(scene: Scene, edit: str | None) -> str:
    """edit, checked against the scene's editors; None: smiling where the scene has it, else its first editor."""
    if edit is None:
        return "smiling" if "smiling" in scene.editors else sorted(scene.editors)[0]
    check_edit(scene, edit)
    return edit


def strength_widget(scene: Scene, edit: str | None = None) -> W.VBox:
    """(a) One editor's strength from −2 to 2 on the scene's image."""
    choice = W.Dropdown(options=sorted(scene.editors), value=_chosen_edit(scene, edit), description="editor")
    strength = _slider("strength", continuous=live(scene))
    return _panel(lambda: render_strength(scene, choice.value, strength.value), [choice, strength])


def mixer_widget(scene: Scene) -> W.VBox:
    """(b) One slider per editor: Δh = Σ c_i·Δh_i."""
    sliders = {name: _slider(name, 0.0, continuous=live(scene)) for name in sorted(scene.editors)}
    return _panel(lambda: render_mix(scene, {n: s.value for n, s in sliders.items()}), list(sliders.values()))


def t_edit_widget(scene: Scene, edit: str | None = None) -> W.VBox:
    """(c) Where the editing interval ends: small t_edit edits longer, large t_edit shorter."""
    edit = _chosen_edit(scene, edit)
    start = scene.editors[edit][1].t_edit
    t_edit = CheckedIntSlider(value=start, min=lowest_t_edit(scene, edit), max=scene.schedule.T - 1, step=20,
                              description="t_edit", continuous_update=live(scene))
    return _panel(lambda: render_t_edit(scene, edit, t_edit.value), [t_edit])


def scrubber_widget(scene: Scene, edit: str | None = None) -> W.VBox:
    """(d) x_t, P_t, D_t along the unedited (top) and edited (bottom) trajectories."""
    edit = _chosen_edit(scene, edit)
    index = CheckedIntSlider(value=0, min=0, max=scene.num_steps - 1, description="step",
                             continuous_update=live(scene))
    label = W.HTML()

    def render() -> torch.Tensor:
        image = render_scrubber(scene, edit, index.value)  # first: a failed render leaves the label as it was
        label.value = f"t = {timestep_of(scene, index.value)} &nbsp; columns: x_t · P_t · D_t (scaled)"
        return image

    panel = _panel(render, [index])
    panel.children = (label, *panel.children)
    return panel


def upload_widget(unet, schedule, on_scene: Callable[[Scene], None], **scene_kwargs) -> W.VBox:
    """Upload your own image: centre-crop, resize, invert (cached), then on_scene(new_scene) shows it."""
    upload = W.FileUpload(accept="image/*", multiple=False, description="your image")
    message = W.HTML()

    def received(_=None) -> None:
        if not upload.value:
            return
        item = upload.value[0] if isinstance(upload.value, (list, tuple)) else next(iter(upload.value.values()))
        message.value = "inverting your image…"  # seconds on a 256² model
        try:
            image, note = load_user_image(bytes(item["content"]), unet.config.sample_size)
            on_scene(make_scene(unet, schedule, image, **scene_kwargs))
            message.value = f"inverted your image: {note}"
        except ValueError as err:
            message.value = _warning(str(err))
        except Exception as err:  # anything else (out of GPU memory, say): shown here, the kernel keeps working
            message.value = _warning(f"{type(err).__name__}: {err}")
        finally:
            upload.value = type(upload.value)()  # empty, so that uploading the same file again is a new upload

    upload.observe(received, names="value")
    return W.VBox([upload, message])
