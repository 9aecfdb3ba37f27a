"""Build the guides: docs/src/*.py (cells in the "percent" format) -> docs/*.ipynb, executed, with outputs.

    python docs/build_notebooks.py            # every guide
    python docs/build_notebooks.py 02 04      # the guides whose names start so

A source file is Python with cell markers: ``# %% [markdown]`` starts a Markdown cell (its lines are comments,
``# `` removed), ``# %%`` a code cell.  The notebook is executed with nbclient in a temporary folder (files the
guide writes land there), then cleaned for the repository: no execution counts, no cell ids or metadata beyond
what nbformat requires, no widget state.  A guide that needs MNIST says so with ``# needs: mnist`` on its first
line; the notebook records it in ``metadata.symbp.needs`` so that the tests can skip it when the data is absent.

Needs ``nbformat``, ``nbclient`` and ``ipykernel`` (the ``dev`` extra).  MNIST is found as symbp finds it
(``$SYMBP_DATA_DIR``, the cache folder, else a download).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SRC = DOCS / "src"
MARKER = re.compile(r"^# %%( \[markdown\])?\s*$")


def parse(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The cells of a percent-format source, as (kind, source) pairs, and its ``# needs:`` list."""
    lines = text.splitlines()
    needs: list[str] = []
    if lines and lines[0].startswith("# needs:"):
        needs = [n.strip() for n in lines[0][len("# needs:"):].split(",") if n.strip()]
        lines = lines[1:]
    cells: list[tuple[str, list[str]]] = []
    for line in lines:
        m = MARKER.match(line)
        if m:
            cells.append(("markdown" if m.group(1) else "code", []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"text before the first cell marker: {line!r}")
    out = []
    for kind, body in cells:
        if kind == "markdown":
            body = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in body]
        src = "\n".join(body).strip("\n")
        if src:
            out.append((kind, src))
    return out, needs


def notebook(path: Path):
    """The (unexecuted) notebook of one source file."""
    import nbformat

    cells, needs = parse(path.read_text(encoding="utf-8"))
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "symbp": {"needs": needs},
    }
    for kind, src in cells:
        cell = nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        nb.cells.append(cell)
    return nb


def clean(nb):
    """Strip what changes from run to run and says nothing: execution counts, ids, cell metadata."""
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:02d}"  # stable ids (nbformat 4.5 wants one)
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.execution_count = None
            for out in cell.outputs:
                if out.output_type == "execute_result":
                    out.execution_count = None
                if out.output_type in ("execute_result", "display_data"):
                    out.metadata = {}
    return nb


def execute(nb, timeout: int = 600):
    """Run every cell (in a temporary folder); an error in any cell is raised."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="symbp-guide-") as cwd:
        # the kernel speaks over Unix sockets in that folder where it can, not over TCP on loopback
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(cwd) / "kernel")) \
            if os.name == "posix" else None
        client = NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": cwd}})
        try:
            client.execute()
        finally:  # a kernel manager passed in is not shut down by nbclient itself
            if km is not None and km.has_kernel:
                km.shutdown_kernel(now=True)
    return nb


def build(path: Path) -> Path:
    import nbformat

    nb = clean(execute(notebook(path)))
    target = DOCS / (path.stem + ".ipynb")
    nbformat.validate(nb)
    target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return target


def main(argv: list[str]) -> int:
    sources = sorted(SRC.glob("[0-9]*.py"))
    if argv:
        sources = [s for s in sources if any(s.name.startswith(a) for a in argv)]
    for src in sources:
        print(f"{src.name} -> ", end="", flush=True)
        print(build(src).relative_to(DOCS.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
