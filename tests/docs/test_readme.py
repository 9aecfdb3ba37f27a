"""The README's code runs and prints what the README shows.

The README is read as a sequence of fenced blocks.  Every ```python block is executed, in order, in one
namespace, with its stdout captured; when the next block is a ```text block, the captured output must equal it.
A ```bash block followed by a ```text block is run by bash (in a temporary folder) and compared the same way;
other shell blocks (the set-up, long commands) are not run.  Blocks that load MNIST are skipped, with the rest,
when the data is not found.

After a deliberate change of what the code prints, rewrite the shown output with

    python tests/docs/test_readme.py --update
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(language, body, (start, end) of the body in text) of every fenced block."""
    return [(m.group(1), m.group(2), m.span(2)) for m in FENCE.finditer(text)]


def runs(text: str) -> list[tuple[str, str, tuple[int, int] | None, str | None]]:
    """What to run: (language, code, span of the shown output or None, the shown output or None)."""
    bs = blocks(text)
    out = []
    for i, (lang, body, _) in enumerate(bs):
        shown = bs[i + 1] if i + 1 < len(bs) and bs[i + 1][0] == "text" else None
        if lang == "python" or (lang == "bash" and shown is not None):
            out.append((lang, body, shown[2] if shown else None, shown[1] if shown else None))
    return out


def normal(s: str) -> str:
    return "\n".join(line.rstrip() for line in s.strip("\n").splitlines())


def execute(lang: str, code: str, namespace: dict, cwd: Path) -> str:
    if lang == "python":
        buf = io.StringIO()
        old = os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(code, "README.md", "exec"), namespace)
        finally:
            os.chdir(old)
        return buf.getvalue()
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"README block failed ({proc.returncode}):\n{code}\n{proc.stderr}"
    return proc.stdout


def needs_data(code: str) -> bool:
    return "load_mnist" in code or "symbp train" in code


def data_found() -> bool:
    env = os.environ.get("SYMBP_DATA_DIR")
    folder = Path(env) if env else REPO.parent / "shared" / "data"
    return (folder / "mnist").is_dir()


def test_readme_blocks_print_what_is_shown(tmp_path, monkeypatch):
    if shutil.which("bash") is None:
        pytest.skip("needs bash for the README's shell blocks")
    if not os.environ.get("SYMBP_DATA_DIR") and (REPO.parent / "shared" / "data").is_dir():
        monkeypatch.setenv("SYMBP_DATA_DIR", str(REPO.parent / "shared" / "data"))
    todo = runs(README.read_text(encoding="utf-8"))
    assert todo, "no python blocks found in the README"
    namespace: dict = {"__name__": "__readme__"}
    for lang, code, _, shown in todo:
        if needs_data(code) and not data_found():
            pytest.skip("MNIST not found: the README's blocks from the first that loads it on are not run")
        got = execute(lang, code, namespace, tmp_path)
        if shown is not None:
            assert normal(got) == normal(shown), f"README block prints something else:\n{code}\n--- printed:\n{got}"


def test_readme_speaks_of_the_project_only():
    text = README.read_text(encoding="utf-8").lower()
    for phrase in ("this session", "this round", "issue ", "the lead", "helper"):
        assert phrase not in text, phrase


def update() -> int:
    """Rewrite each shown output in the README with what its block prints now."""
    text = README.read_text(encoding="utf-8")
    namespace: dict = {"__name__": "__readme__"}
    replacements = []
    import tempfile

    with tempfile.TemporaryDirectory() as cwd:
        for lang, code, span, _ in runs(text):
            got = execute(lang, code, namespace, Path(cwd))
            if span is not None:
                replacements.append((span, normal(got) + "\n"))
    for (start, end), new in sorted(replacements, reverse=True):
        text = text[:start] + new + text[end:]
    README.write_text(text, encoding="utf-8")
    print(f"updated {len(replacements)} shown outputs in {README}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        sys.exit(update())
    sys.exit(pytest.main([__file__, "-q"]))
