"""The tiny CLIP: open_clip classes, offline tokenizer, differentiable image features, save/load, training works."""
import re

import pytest
import torch

from asyrp_edu import tiny_clip as tc
from asyrp_edu import tiny_clip_training as tct
from asyrp_edu import toy
from asyrp_edu.train_asyrp import EditorConfig

# A smaller model than the shipped one, so each test runs in about a second.
SMALL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1, "mlp_ratio": 2.0},
}


@pytest.fixture
def small_clip():
    torch.manual_seed(0)
    return tc.TinyClip(tc.build_tiny_clip(SMALL))


def test_build_uses_open_clip_classes_and_shipped_config():
    from open_clip.model import CLIP

    model = tc.build_tiny_clip()
    assert isinstance(model, CLIP)
    assert model.context_length == tc.CONTEXT_LENGTH


def test_forward_shapes_and_unit_norm(small_clip):
    img = small_clip.encode_image(toy.sample(3, seed=0)[0])
    txt = small_clip.encode_text(["a smiling cartoon face", "a cartoon face with glasses"])
    assert img.shape == (3, 32) and txt.shape == (2, 32)
    assert torch.allclose(img.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txt.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        small_clip.encode_image(torch.zeros(3, 32, 32))
    # open_clip's ResNets keep their input size as one int; 16² images are resized to it all the same
    small_clip.model.visual.image_size = 32
    assert torch.allclose(small_clip.encode_image(toy.sample(3, seed=0, size=16)[0]),
                          small_clip.encode_image(torch.nn.functional.interpolate(
                              toy.sample(3, seed=0, size=16)[0], size=(32, 32), mode="bicubic", antialias=True)),
                          atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):  # twin pairs: a batch of one holds none
        tct.train_tiny_clip(None, steps=1, batch_size=1, config=SMALL, progress=False)


def test_gradients_flow_to_images_but_not_weights(small_clip):
    x = toy.sample(2, seed=1)[0].requires_grad_(True)
    t = small_clip.encode_text(["a sad cartoon face", "a smiling cartoon face"])
    loss = 1 - torch.cosine_similarity(small_clip.encode_image(x)[1] - small_clip.encode_image(x)[0], t[1] - t[0], 0)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in small_clip.model.parameters())


def test_tokenizer_works_offline(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("network access during tokenizer construction")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    tok = tc.get_tokenizer()  # the BPE merges ship inside the open_clip package
    t = tok(["a smiling cartoon face", "a cartoon face with green alien skin"])
    assert t.shape == (2, tc.CONTEXT_LENGTH)
    assert int(t[0, 0]) == tok.sot_token_id and tok.eot_token_id in t[1].tolist()


def test_captions_and_soft_targets_are_consistent():
    import random

    attrs, changed = tct._twin_batch(8, seed=0, g=torch.Generator().manual_seed(0))
    texts, log_fit = tct._captions(attrs, changed, random.Random(0))
    assert len(texts) == 16 and all(t.startswith("a ") and "cartoon face" in t for t in texts)
    assert (log_fit.diagonal().exp() > 0.2).all()  # every caption fits its own image
    assert tct.compose_caption({"mouth": "smiling", "glasses": "glasses"}) == "a smiling cartoon face with glasses"


def test_train_save_load_round_trip_and_loss_goes_down(tmp_path):
    from asyrp_edu.checks import sha256_of

    out = tmp_path / "clip.safetensors"
    clip, losses = tct.train_tiny_clip(out, steps=30, batch_size=32, lr=3e-3, seed=0, config=SMALL, progress=False)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    digest = sha256_of(out)
    loaded = tc.load_tiny_clip(out)
    x = toy.sample(4, seed=2, heldout=True)[0]
    prompts = [p for k in tc.PROMPTS for p in tc.PROMPTS[k][:2]]
    assert torch.allclose(loaded.encode_image(x), clip.encode_image(x), atol=1e-5)
    assert torch.allclose(loaded.encode_text(prompts), clip.encode_text(prompts), atol=1e-5)
    assert sha256_of(out) == digest  # loading does not touch the file
    with pytest.raises(KeyError, match="unknown attribute"):
        tc.direction_alignment(loaded, "nose", n=4)


class _AttributeReader:
    """A stand-in CLIP that reads the rendered attributes: E_I = the attributes of the last render, and the prompt
    pair of attribute k encodes as (0, e_k), so ΔT = e_k; `flip` swaps the pair."""

    def __init__(self, monkeypatch, flip: bool = False):
        self.names, self.flip, self.rendered, self.asked = list(tc.PROMPTS), flip, None, None
        real_render = toy.render
        monkeypatch.setattr(toy, "render", lambda attrs: setattr(self, "rendered", attrs) or real_render(attrs))

    def encode_text(self, prompts):
        k = next(i for i, (low, high, _, _) in enumerate(tc.PROMPTS.values()) if [low, high] == list(prompts))
        self.asked = self.names[k]
        pair = torch.zeros(2, len(self.names))
        pair[0 if self.flip else 1, k] = 1.0
        return pair

    def encode_image(self, x):
        n = x.shape[0]
        return torch.stack([torch.as_tensor(self.rendered[k], dtype=torch.float).expand(n) for k in self.names], 1)


def test_zero_shot_accuracy_and_crosstalk_read_a_known_clip(monkeypatch):
    """A CLIP that reads the attributes exactly scores 100% zero-shot (0% with its prompts swapped), and its text
    directions have crosstalk 1 on the diagonal and 0 off it."""

    class Threshold(_AttributeReader):  # E_I = ±e_k: +1 on the high side of attribute k (the one asked about)
        def encode_image(self, x):
            (_, l1), (h0, _) = tc.PROMPTS[self.asked][2:]
            is_high = (torch.as_tensor(self.rendered[self.asked]) > (l1 + h0) / 2).float()
            features = torch.zeros(x.shape[0], len(self.names))
            features[:, self.names.index(self.asked)] = 2 * is_high - 1
            return features

    assert tc.zero_shot_accuracy(Threshold(monkeypatch), n=16) == {k: 1.0 for k in tc.PROMPTS}
    assert tc.zero_shot_accuracy(Threshold(monkeypatch, flip=True), n=16) == {k: 0.0 for k in tc.PROMPTS}
    table = tc.direction_crosstalk(_AttributeReader(monkeypatch), n=4)
    for moved, row in table.items():
        assert row == {k: pytest.approx(1.0 if k == moved else 0.0, abs=1e-6) for k in tc.PROMPTS}, moved
    assert tc.direction_alignment(_AttributeReader(monkeypatch, flip=True), "mouth", n=4) == pytest.approx(-1.0)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-clip"):
        tc.load_tiny_clip(tmp_path / "nope.safetensors")


def test_cli_parser_registers_train_clip():
    import argparse

    parser = argparse.ArgumentParser()
    tct.add_train_clip_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-clip", "--out", "x.safetensors", "--steps", "5", "--seed", "1"])
    assert args.steps == 5 and args.seed == 1 and args.func is tct._cmd_train_clip


def test_keep_names_others_and_pairs():
    assert tc.keep_prompt_pairs(["glasses"]) == (tc.PROMPTS["glasses"][:2],)
    others = tc.keep_prompt_pairs(["others"], edited="mouth")
    assert len(others) == len(tc.PROMPTS) - 2  # not the edited attribute, not the unseen alien
    assert tc.PROMPTS["mouth"][:2] not in others and tc.PROMPTS["glasses"][:2] in others
    assert tc.keep_prompt_pairs(["a cat | a dog"]) == (("a cat", "a dog"),)


def test_keep_errors_name_the_fix():
    with pytest.raises(ValueError, match=re.escape("'SOURCE|TARGET'")):
        tc.keep_prompt_pairs(["moustache"])
    with pytest.raises(ValueError, match="empty"):
        EditorConfig("a sad face", "a smiling face", keep=(("", "a face with glasses"),))
    with pytest.raises(ValueError, match="lambda_keep"):
        EditorConfig("a sad face", "a smiling face", lambda_keep=-1.0)
    config = EditorConfig("a sad face", "a smiling face", keep=[["no glasses", "glasses"]])  # as read back from JSON
    assert config.keep == (("no glasses", "glasses"),)


def test_a_diverging_clip_run_stops_before_saving(tmp_path):
    from asyrp_edu.tiny_clip_training import train_tiny_clip

    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_tiny_clip(tmp_path / "clip.safetensors", steps=4, batch_size=2, lr=float("inf"), progress=False)
    assert not (tmp_path / "clip.safetensors").exists()
