"""The package's house rules that code can check: no module of symbp takes a private name (one starting with
``_``) from another symbp module; what crosses modules is public."""

from __future__ import annotations

import ast
from pathlib import Path

import symbp

ROOT = Path(symbp.__file__).resolve().parent


def test_no_private_name_is_imported_across_modules():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("symbp"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(ROOT.parent)}: from {node.module} import {', '.join(private)}")
    assert not found, "\n".join(found)
