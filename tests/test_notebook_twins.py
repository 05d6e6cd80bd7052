"""Every notebooks/*.py (the source) has an .ipynb twin with the same cells and no outputs."""
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert len(SOURCES) >= 2


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_twin_matches_source_and_has_no_outputs(source):
    twin = source.with_suffix(".ipynb")
    assert twin.is_file(), f"{twin.name} is missing: run `jupytext --sync {source.relative_to(NOTEBOOKS.parent)}`"
    from_py = jupytext.read(source)
    from_ipynb = nbformat.read(twin, as_version=4)
    assert _cells(from_py) == _cells(from_ipynb), (
        f"{twin.name} and {source.name} drifted apart: edit the .py, then `jupytext --sync` and commit both")
    for cell in from_ipynb.cells:
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"{twin.name} has saved outputs"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_colab_opens_each_notebook_on_a_gpu_runtime(source):
    """The Colab badges open notebooks that also run the real world: their metadata asks Colab for a GPU runtime
    (when none is free, Colab offers to connect without one, and the toy world runs there)."""
    metadata = nbformat.read(source.with_suffix(".ipynb"), as_version=4).metadata
    assert metadata.get("accelerator") == "GPU" and metadata.get("colab", {}).get("gpuType"), metadata
