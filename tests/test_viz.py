"""Figures: the live loss plot shows every update once training has returned."""
from types import SimpleNamespace

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
