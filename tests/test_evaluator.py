"""The judge's own training: a few steps learn, the file round-trips, and it refuses images of the wrong size."""
import pytest
import torch

from asyrp_edu import toy
from asyrp_edu.evaluator import Evaluator, evaluator_accuracy, load_evaluator, train_evaluator, training_batch


def test_train_evaluator_learns_and_round_trips(tmp_path):
    out = tmp_path / "judge.safetensors"
    net, losses = train_evaluator(out, steps=60, batch_size=32, lr=3e-3, seed=0, progress=False)
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    assert not list(tmp_path.glob("*.tmp"))  # written atomically: no temporary file left behind
    loaded = load_evaluator(out)
    x = toy.sample(8, seed=1, heldout=True)[0]
    trained = Evaluator(net.eval())(x)
    assert all(torch.equal(loaded(x)[k], trained[k]) for k in toy.ATTRIBUTES)
    report = evaluator_accuracy(loaded, n=32)
    assert set(report) == {f"mae_{k}" for k in toy.CONTINUOUS_ATTRIBUTES} | {"glasses_accuracy"}


def test_evaluator_rejects_images_it_cannot_read(tmp_path):
    judge = load_evaluator()
    with pytest.raises(ValueError, match="expects 32×32; resize"):
        judge(torch.zeros(2, 3, 64, 64))
    with pytest.raises(FileNotFoundError, match="train-evaluator"):
        load_evaluator(tmp_path / "missing.safetensors")


def test_augmentation_falls_on_smiling_and_sad_faces_alike():
    """The blur and noise are drawn apart from the attributes: one shared seed once blurred only the sad faces."""
    augmented = {True: [], False: []}
    for step in range(8):
        x_aug, y = training_batch(seed=0, step=step, batch_size=64)
        x, _ = toy.sample(64, seed=step)  # the same batch before augmentation
        changed = (x_aug - x).flatten(1).abs().amax(1) > 0
        smiling = y[:, toy.ATTRIBUTES.index("mouth")] > 0
        for is_smiling in (True, False):
            augmented[is_smiling] += changed[smiling == is_smiling].tolist()
    shares = {k: sum(v) / len(v) for k, v in augmented.items()}
    assert all(0.35 <= share <= 0.65 for share in shares.values()), shares  # half of each group
