"""Figures: the live loss plot shows every update once training has returned."""
from types import SimpleNamespace

import pytest

from asyrp_edu.viz import LiveLossPlot


def test_live_loss_plot_redraws_every_few_updates_and_at_the_end():
    plot = LiveLossPlot(every=10, title="f_t")
    losses = []
    for i in range(13):
        losses.append(1.0 / (i + 1))
        plot(SimpleNamespace(losses=losses, s_dir=[0.5] * len(losses)))
    assert plot.fig._suptitle.get_text() == "f_t: 10 updates"  # 11–13 are not drawn yet
    plot.finish(SimpleNamespace(losses=losses, s_dir=[0.5] * len(losses)))
    assert plot.fig._suptitle.get_text() == "f_t: 13 updates"
    assert len(plot.ax_loss.lines[0].get_ydata()) == 13


def test_save_figure_writes_the_format_its_name_asks_for(tmp_path):
    import matplotlib.pyplot as plt

    from asyrp_edu.viz import save_figure

    fig = plt.figure(figsize=(1, 1))
    assert save_figure(fig, tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG, not PNG under a .jpg name
    assert save_figure(fig, tmp_path / "a").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"'\.xyz' figure; name it with one of .*\.png"):
        save_figure(fig, tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="is a folder"):
        save_figure(fig, tmp_path)
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a.jpg"]  # no temporary files left


@pytest.mark.parametrize("trainer", ["evaluator", "clip"])
def test_trainers_refuse_a_folder_as_their_output_before_training(tmp_path, monkeypatch, trainer):
    from asyrp_edu import evaluator, tiny_clip_training, toy

    monkeypatch.setattr(toy, "sample", lambda *a, **k: pytest.fail("trained first"))
    train = evaluator.train_evaluator if trainer == "evaluator" else tiny_clip_training.train_tiny_clip
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        train(tmp_path, steps=1, progress=False)
