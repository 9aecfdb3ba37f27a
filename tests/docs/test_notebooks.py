"""The guides (docs/*.ipynb): built from their sources, committed with outputs, and they run.

Running them is slow (a Jupyter kernel each, numba compiles, small trainings): marked ``slow``.  A guide that
needs MNIST (``metadata.symbp.needs``) is skipped when the data is not found.  Rebuild the notebooks with
``python docs/build_notebooks.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
NOTEBOOKS = sorted(DOCS.glob("[0-9]*.ipynb"))
SOURCES = sorted((DOCS / "src").glob("[0-9]*.py"))
MAX_BYTES = 100_000  # a guide stays small enough to read on GitHub: no large images


def _build():
    if str(DOCS) not in sys.path:
        sys.path.insert(0, str(DOCS))
    import build_notebooks

    return build_notebooks


def _ids(paths):
    return [p.stem for p in paths]


def test_every_source_has_its_notebook():
    assert SOURCES, "no guide sources in docs/src"
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_matches_its_source_and_is_clean(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells, needs = _build().parse((DOCS / "src" / (notebook.stem + ".py")).read_text(encoding="utf-8"))
    assert [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]] == cells, \
        f"{notebook.name} differs from its source: run python docs/build_notebooks.py {notebook.stem[:2]}"
    assert nb["metadata"].get("symbp", {}).get("needs", []) == needs
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is None and not c["metadata"] for c in code)
    assert any(c["outputs"] for c in code), f"{notebook.name} was committed without its outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    assert notebook.stat().st_size < MAX_BYTES, f"{notebook.name} is {notebook.stat().st_size} bytes"


def _data_folder() -> Path | None:
    env = os.environ.get("SYMBP_DATA_DIR")
    folder = Path(env) if env else REPO.parent / "shared" / "data"
    return folder if (folder / "mnist").is_dir() else None


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(notebook, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    if "mnist" in nb.metadata.get("symbp", {}).get("needs", []):
        folder = _data_folder()
        if folder is None:
            pytest.skip("MNIST not found: set SYMBP_DATA_DIR to a folder holding mnist/")
        monkeypatch.setenv("SYMBP_DATA_DIR", str(folder))  # the kernel inherits the environment
    _build().execute(nb, timeout=300)  # raises CellExecutionError, naming the cell, on any error
