"""The directional CLIP loss and the reconstruction loss, on a hand-made encoder whose answers we know."""
import pytest
import torch

from asyrp_edu.losses import (asyrp_loss, check_prompts, default_lambda_recon, directional_clip_loss,
                              keep_loss, text_direction)


def mean_colour(images: torch.Tensor) -> torch.Tensor:
    """A toy 'CLIP' image encoder: the mean RGB colour."""
    return images.mean(dim=(2, 3))


def words_to_colour(prompts):
    table = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0], "a red thing": [1.0, 0.1, 0.0]}
    return torch.tensor([table[p.split(" of ")[-1]] for p in prompts])


def test_loss_is_zero_when_the_image_moves_along_the_text_direction():
    delta_T, cos = text_direction(words_to_colour, "red", "green")
    src = torch.zeros(2, 3, 4, 4)
    src[:, 0] = 0.5  # reddish
    edit = src.clone()
    edit[:, 0] = 0.0
    edit[:, 1] = 0.5  # pure green: the normalised features move exactly along ΔT
    loss, s_dir = directional_clip_loss(mean_colour, edit, src, delta_T)
    assert torch.allclose(s_dir, torch.ones(2), atol=1e-3) and loss.max() < 1e-3
    wrong = src.clone()
    wrong[:, 2] += 0.3  # towards blue: orthogonal to ΔT
    loss, s_dir = directional_clip_loss(mean_colour, wrong, src, delta_T)
    assert loss.min() > 0.5
    log_loss, _ = directional_clip_loss(mean_colour, wrong, src, delta_T, kind="log")
    assert torch.allclose(log_loss, -torch.log((1 + s_dir) / 2))
    assert cos == pytest.approx(0.0, abs=1e-6)


def _flat(r: float, g: float, b: float) -> torch.Tensor:
    """Two images of one flat colour."""
    return torch.tensor([r, g, b]).view(1, 3, 1, 1).expand(2, 3, 4, 4).clone()


def test_keep_loss_counts_only_change_along_the_kept_directions():
    keep = [text_direction(words_to_colour, "red", "blue")[0]]
    src = _flat(0.5, 0.3, 0.0)
    along = _flat(0.0, 0.3, 0.5)  # red -> blue at the same feature length: ΔI lies exactly along the kept ΔT
    aside = _flat(0.4, 0.17 ** 0.5, -0.1)  # red and blue fall alike, green rises, same length: orthogonal to it
    assert torch.allclose(keep_loss(mean_colour, along, src, keep), torch.ones(2), atol=1e-5)
    assert keep_loss(mean_colour, aside, src, keep).max() < 1e-5
    back = keep_loss(mean_colour, src, along, keep)  # blue -> red: either way changes the kept attribute
    assert torch.allclose(back, torch.ones(2), atol=1e-5)


def test_templates_are_averaged():
    d1, _ = text_direction(words_to_colour, "red", "green", templates=("{}", "a photo of {}"))
    d2, _ = text_direction(words_to_colour, "red", "green")
    assert torch.allclose(d1, d2)


def test_total_loss_and_default_lambda():
    assert default_lambda_recon(0.8) == pytest.approx(2.4)
    src = torch.rand(2, 3, 4, 4) * 0.2
    edit = (src + 0.1).requires_grad_()
    delta_T, _ = text_direction(words_to_colour, "red", "green")
    parts = asyrp_loss(mean_colour, edit, src, delta_T, lambda_recon=2.0)
    parts["loss"].backward()
    assert edit.grad is not None and parts["recon"] == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("source, target, match", [("", "a face", "empty"), ("a face", "  ", "empty"),
                                                   ("a face", "A face", "same text")])
def test_bad_prompts(source, target, match):
    with pytest.raises(ValueError, match=match):
        check_prompts(source, target)
