"""A compile-ahead worker: ``python -m symbp.compile.backends.numba.worker MODULE FUNCTION [MODULE FUNCTION ...]``.

Takes: pairs of a kernel module's path in the cache (written by the parent) and the kernel's name.  Gives: exit
status 0 once numba has compiled every kernel into the cache beside its module (its files written atomically), 1
if one could not (the parent then compiles it itself and reports the error).  Imports symbp's numba backend
and nothing of the parent's program.
"""

from __future__ import annotations

import sys
from pathlib import Path

from symbp.compile.backends.numba.cache import load_module


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print("usage: python -m symbp.compile.backends.numba.worker MODULE FUNCTION [MODULE FUNCTION ...]",
              file=sys.stderr)
        return 2
    status = 0
    for path, name in zip(argv[::2], argv[1::2]):
        try:
            load_module(Path(path).read_text(encoding="utf-8"), [name])
        except Exception as exc:  # noqa: BLE001 - reported by the parent's own compile
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
