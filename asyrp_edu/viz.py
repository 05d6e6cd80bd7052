"""Figures: image grids and curves, drawn with matplotlib."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import torch

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) numpy array in [0, 1] for imshow."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def image_grid(rows: Sequence[torch.Tensor], row_titles: Sequence[str] | None = None,
               col_titles: Sequence[str] | None = None, scale: float = 1.1, title: str | None = None) -> Figure:
    """A figure with one row per (N, 3, H, W) batch; returns the matplotlib Figure."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols + (1.2 if row_titles else 0), scale * n_rows),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                ax.imshow(to_numpy_image(row[j]), interpolation="nearest")
            if j == 0 and row_titles:
                ax.set_ylabel(row_titles[i], rotation=0, ha="right", va="center", fontsize=9)
            if i == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figure_format(path: str | Path) -> str:
    """The format a figure file's name asks for (.png, .jpg, .pdf, .svg, …; no suffix: png), or a ValueError."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the figure's file name, e.g. {path / 'figure.png'}")
    kind = path.suffix.lstrip(".").lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if kind not in formats:
        raise ValueError(f"cannot write a {path.suffix!r} figure; name it with one of "
                         f"{', '.join('.' + k for k in sorted(formats))}")
    return kind


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write fig atomically, in the format its file name says."""
    from .models import atomic_write

    kind = figure_format(path)
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format=kind))


class LiveLossPlot:
    """A training callback that redraws loss and S_dir curves in place every `every` updates (notebooks)."""

    def __init__(self, every: int = 5, title: str = "training f_t"):
        self.every, self.title, self.handle = every, title, None
        self.fig, (self.ax_loss, self.ax_sdir) = plt.subplots(1, 2, figsize=(8, 2.6))
        plt.close(self.fig)  # shown through the display handle only, not once more at the end of the cell

    def __call__(self, result, force: bool = False) -> None:
        """Redraw from result.losses and result.s_dir (any object with those two lists) every `every` updates."""
        n = len(result.losses)
        if n % self.every and n > 1 and not force:
            return
        for ax, values, name in ((self.ax_loss, result.losses, "loss"), (self.ax_sdir, result.s_dir, "S_dir")):
            ax.clear()
            ax.plot(values, lw=1)
            ax.set_xlabel("update")
            ax.set_ylabel(name)
        self.ax_sdir.set_ylim(-1, 1)
        self.fig.suptitle(f"{self.title}: {n} updates", fontsize=10)
        self.fig.tight_layout()
        try:
            from IPython.display import display
        except ImportError:  # plain Python: nothing to show live
            return
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def finish(self, result) -> None:
        """Draw the last updates too, once training has returned its result."""
        self(result, force=True)
