"""The directional CLIP loss and the reconstruction loss, on a hand-made encoder whose answers we know."""
import pytest
import torch
import torch.nn.functional as F

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
    # by hand: E_I(src) = (1, 0, 0), E_I(wrong) = (0.5, 0, 0.3)/0.583 = (0.857, 0, 0.514), ΔT = (−1, 1, 0)/√2,
    # so S_dir = cos((−0.143, 0, 0.514), ΔT) = 0.1888, the paper's loss 1 − 0.1888 and the authors' −log(1.1888/2)
    assert torch.allclose(s_dir, torch.full((2,), 0.18875), atol=1e-4)
    assert torch.allclose(loss, torch.full((2,), 0.81125), atol=1e-4)
    log_loss, _ = directional_clip_loss(mean_colour, wrong, src, delta_T, kind="log")
    assert torch.allclose(log_loss, torch.full((2,), 0.52024), atol=1e-4)
    along_log, _ = directional_clip_loss(mean_colour, edit, src, delta_T, kind="log")
    assert along_log.max() < 1e-3  # −log((1 + 1)/2) = 0
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
    """E_T(y) is the normalised mean of the normalised template features; the template must change the answer."""
    photo_bias = torch.tensor([0.5, 0.0, 2.0])

    def templated(prompts):  # "a photo of {}" adds photo_bias, so the two templates encode differently
        return torch.stack([words_to_colour([p])[0] + photo_bias * p.startswith("a photo of") for p in prompts])

    def by_hand(word: str) -> torch.Tensor:
        plain = words_to_colour([word])[0]
        photo = plain + photo_bias
        mean = (plain / plain.norm() + photo / photo.norm()) / 2
        return mean / mean.norm()

    d1, cos = text_direction(templated, "red", "green", templates=("{}", "a photo of {}"))
    expected = by_hand("green") - by_hand("red")
    assert torch.allclose(d1, expected / expected.norm(), atol=1e-6)
    assert cos == pytest.approx(float(by_hand("red") @ by_hand("green")), abs=1e-6)
    assert cos > 0.2  # the shared bias of "a photo of …" makes the two texts alike
    assert not torch.allclose(d1, text_direction(templated, "red", "green")[0], atol=1e-2)


def test_total_loss_and_default_lambda():
    assert default_lambda_recon(0.8) == pytest.approx(2.4)
    src = torch.rand(2, 3, 4, 4) * 0.2
    edit = (src + torch.tensor([0.0, 0.1, 0.05]).view(1, 3, 1, 1)).requires_grad_()
    delta_T, _ = text_direction(words_to_colour, "red", "green")
    keep = [text_direction(words_to_colour, "red", "blue")[0]]
    # the parts by hand: ΔI from the mean colours, L1 from the pixels
    delta_I = F.normalize(mean_colour(edit.detach()), dim=-1) - F.normalize(mean_colour(src), dim=-1)  # (2, 3)
    cos = (delta_I @ delta_T) / delta_I.norm(dim=-1)
    keep_cos = (delta_I @ keep[0]) / delta_I.norm(dim=-1)
    recon = float((edit.detach() - src).abs().mean())
    assert recon == pytest.approx(0.05, abs=1e-6)
    for lambda_clip, lambda_recon, lambda_keep in ((1.0, 2.0, 0.0), (0.5, 3.0, 4.0)):
        parts = asyrp_loss(mean_colour, edit, src, delta_T, lambda_recon=lambda_recon, lambda_clip=lambda_clip,
                           keep_directions=keep, lambda_keep=lambda_keep, keep_reference=src)
        expected = (lambda_clip * (1 - cos).mean() + lambda_recon * recon
                    + lambda_keep * keep_cos.pow(2).mean())
        assert float(parts["loss"].detach()) == pytest.approx(float(expected), abs=1e-5)
        assert float(parts["direction"]) == pytest.approx(float((1 - cos).mean()), abs=1e-6)
        assert float(parts["recon"]) == pytest.approx(recon, abs=1e-6)
        assert float(parts["s_dir"]) == pytest.approx(float(cos.mean()), abs=1e-6)
    parts["loss"].backward()
    assert edit.grad is not None and edit.grad.abs().sum() > 0
    # ΔI against another image (the authors' x0): only the CLIP term changes; L1 still compares with P_source
    x0 = src + torch.tensor([0.0, 0.0, 0.1]).view(1, 3, 1, 1)  # bluer than P_source: ΔI turns away from ΔT
    delta_I0 = F.normalize(mean_colour(edit.detach()), dim=-1) - F.normalize(mean_colour(x0), dim=-1)
    cos0 = (delta_I0 @ delta_T) / delta_I0.norm(dim=-1)
    parts = asyrp_loss(mean_colour, edit, src, delta_T, lambda_recon=2.0, clip_reference=x0)
    assert float(parts["s_dir"]) == pytest.approx(float(cos0.mean()), abs=1e-6)
    assert float(cos.mean() - cos0.mean()) > 0.3  # (0.99 against P_source, 0.62 against x0)
    assert float(parts["recon"]) == pytest.approx(recon, abs=1e-6)
    assert float(parts["loss"].detach()) == pytest.approx(float((1 - cos0).mean() + 2.0 * recon), abs=1e-5)


@pytest.mark.parametrize("source, target, match", [("", "a face", "empty"), ("a face", "  ", "empty"),
                                                   ("a face", "A face", "same text")])
def test_bad_prompts(source, target, match):
    with pytest.raises(ValueError, match=match):
        check_prompts(source, target)
