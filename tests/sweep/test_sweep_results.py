"""The results folder (results.jsonl, written line by line, corrupt lines found) and the reports: table, best, plot."""

from __future__ import annotations

import json
import os

import pytest
import sweep_kit as kit

from symbp.sweep import report, store


def record(key: str, eta: float, lmbda: float, seed: int, acc: list[float]) -> dict:
    best = max(range(len(acc)), key=lambda i: (acc[i], -i)) + 1
    return {"format": store.RECORD_FORMAT, "version": store.RECORD_VERSION, "key": key,
            "values": {"eta": eta, "lmbda": lmbda}, "seed": seed, "params": {"eta": eta, "lmbda": lmbda, "epochs": 3},
            "epochs": len(acc), "best_epoch": best, "best_accuracy": acc[best - 1], "evaluation_accuracy": acc,
            "history": {"evaluation_accuracy": acc, "best_epoch": best}, "wall_seconds": 1.5,
            "model": f"models/{key}", "diverged": None}


def key(i: int) -> str:
    return f"{i:020x}"


def fake_model(folder, k):
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "models" / f"{k}.json").write_text("{}")


def test_lines_are_appended_whole_and_read_back(tmp_path):
    with store.ResultStore(tmp_path) as s:
        for i in range(3):
            fake_model(tmp_path, key(i))
            s.append(record(key(i), 0.5 * (i + 1), 0.0, 0, [0.5, 0.6 + i / 10]))
    text = (tmp_path / "results.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 3
    assert all(line.startswith('{"key":"') for line in text.splitlines())  # a line cut short still names its trial
    with store.ResultStore(tmp_path) as s:
        assert list(s.records) == [key(0), key(1), key(2)]
    assert [r["key"] for r in store.load_results(tmp_path)] == [key(0), key(1), key(2)]


def test_one_writer_at_a_time(tmp_path):
    with store.ResultStore(tmp_path), pytest.raises(ValueError, match="another sweep"), store.ResultStore(tmp_path):
        pass
    with store.ResultStore(tmp_path):  # free again
        pass


def test_corrupt_lines_are_reported_moved_and_the_rest_kept(tmp_path):
    with store.ResultStore(tmp_path) as s:
        for i in range(5):
            fake_model(tmp_path, key(i))
            s.append(record(key(i), 0.5, 0.0, i, [0.5, 0.7]))
    good = (tmp_path / "results.jsonl").read_text().splitlines()
    flipped = good[2].replace('"seed":2', '"seed":7')  # still valid JSON: caught by its check
    lines = [good[0], "not json at all", flipped, good[3], "[1, 2]", good[4][:40]]  # the last one cut short
    (tmp_path / "results.jsonl").write_text("\n".join(lines))  # and no final newline
    os.remove(tmp_path / "models" / f"{key(3)}.json")  # a record whose model went missing
    with pytest.warns(RuntimeWarning) as caught, store.ResultStore(tmp_path) as s:
        assert list(s.records) == [key(0)]
    messages = "\n".join(str(w.message) for w in caught)
    for n in (2, 3, 5, 6):
        assert f"line {n}" in messages and "corrupt" in messages
    assert f"line 3 (trial {key(2)})" in messages and f"line 6 (trial {key(4)})" in messages
    assert f"line 4 (trial {key(3)}): the model file" in messages
    assert (tmp_path / "results.jsonl").read_text() == good[0] + "\n"
    moved = (tmp_path / "results.corrupt.jsonl").read_text().splitlines()
    assert moved == lines[1:]
    # reading alone (no lock) skips with a warning and changes nothing
    (tmp_path / "results.jsonl").write_text(good[0] + "\n{oops\n")
    with pytest.warns(RuntimeWarning, match="line 2 is corrupt"):
        assert [r["key"] for r in store.load_results(tmp_path)] == [key(0)]
    assert (tmp_path / "results.jsonl").read_text() == good[0] + "\n{oops\n"


def test_a_record_is_sealed_by_its_check():
    r = store.seal(record(key(1), 0.5, 0.0, 0, [0.5]))
    assert store.check_record(r) is None
    assert "check" in store.check_record({**r, "best_accuracy": 0.9})
    assert store.check_record(json.loads(json.dumps(r))) is None
    assert "model" in store.check_record(store.seal({**r, "model": "../../etc/passwd"}))


def results():
    out = []
    i = 0
    for eta in (0.1, 0.5, 3.0):
        for lmbda in (0.0, 5.0):
            for seed in (0, 1):
                acc = [0.5, 0.6 + 0.1 * (eta > 0.2) + 0.05 * (lmbda > 0) + 0.01 * seed]
                r = record(key(i), eta, lmbda, seed, acc)
                out.append({**r["values"], **{k: v for k, v in r.items() if k != "values"}})
                i += 1
    return out


def test_table_sorted_by_accuracy_and_the_best():
    res = results()
    ranked = report.ranked(res)
    accs = [r["best_accuracy"] for r in ranked]
    assert accs == sorted(accs, reverse=True)
    best = report.best_trial(res)
    assert best["best_accuracy"] == max(accs) and best["eta"] == 0.5 and best["lmbda"] == 5.0 and best["seed"] == 1
    assert report.grid_names(res) == ["eta", "lmbda"]
    md = report.markdown_table(res, top=3)
    rows = md.splitlines()
    assert rows[0] == "| eta | lmbda | seed | best accuracy | best epoch | final | wall s |" and len(rows) == 5
    assert rows[2] == "| 0.5 | 5 | 1 | 76.00% | 2 | 76.00% | 1.5 |"
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(report.rich_table(res, top=4, title="trials"))
    assert "76.00%" in console.export_text()
    assert report.describe(best) == "eta=0.5, lmbda=5, seed=1"
    assert report.best_trial([]) is None


def test_plot_sweep_writes_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    path = report.plot_sweep(results(), tmp_path / "sweep")
    assert path == tmp_path / "sweep.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.plot_sweep(results()[:1], tmp_path / "one.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="no trials"):
        report.plot_sweep([], tmp_path / "none.png")


# -- a results file that is not what a sweep writes -------------------------------------------------------------
def _bounded(fn, seconds=10):
    return kit.within(seconds, fn)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_a_results_file_that_is_not_a_regular_file_is_refused_before_reading(tmp_path, kind):
    path = tmp_path / "results.jsonl"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer for ever
    elif kind == "dev-zero":
        os.symlink("/dev/zero", path)  # reading it would fill the memory
    else:
        path.mkdir()
    what = {"fifo": "a FIFO", "dev-zero": "a character device", "folder": "a directory"}[kind]
    if kind == "dev-zero":  # first in a process of bounded memory: reading it must not take this one down
        import subprocess
        import sys

        code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
                "from symbp.sweep import store\n"
                "try:\n    store.load_results(sys.argv[1])\nexcept ValueError as e:\n    print(e)")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "must be a regular file" in done.stdout, done.stderr[-500:]
    for read in (lambda: store.load_results(tmp_path), lambda: store.ResultStore(tmp_path).__enter__()):
        with pytest.raises(ValueError, match="must be a regular file") as info:
            _bounded(read)
        assert what in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    with store.ResultStore(tmp_path / "other"):  # the lock was let go: the store is usable elsewhere
        pass


def test_a_results_file_over_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    assert store.MAX_RESULTS == 1 << 30  # the bound: 1 GiB (100,000 trials, a sweep's most, of a few kB each)
    fake_model(tmp_path, key(0))
    with store.ResultStore(tmp_path) as s:
        s.append(record(key(0), 0.5, 0.0, 0, [0.5, 0.6]))
    size = (tmp_path / "results.jsonl").stat().st_size
    monkeypatch.setattr(store, "MAX_RESULTS", size - 1)
    with pytest.raises(ValueError, match=f"{size:,} bytes, more than {size - 1:,}"):
        store.load_results(tmp_path)
    with pytest.raises(ValueError, match="more than"), store.ResultStore(tmp_path):
        pass
    monkeypatch.setattr(store, "MAX_RESULTS", size)
    assert len(store.load_results(tmp_path)) == 1


def _sealed_line(doc: dict) -> str:
    return json.dumps(store.seal(doc), separators=(",", ":"))


@pytest.mark.parametrize("change, why", [
    ({"best_accuracy": 7.5}, "best_accuracy must be a number from 0 to 1, got 7.5"),
    ({"best_epoch": -3}, "best_epoch must be an integer >= 0, got -3"),
    ({"best_epoch": 1.5}, "best_epoch must be an integer >= 0"),
    ({"best_epoch": "2"}, "best_epoch must be an integer >= 0"),
    ({"best_accuracy": "high"}, "best_accuracy must be a number from 0 to 1"),
    ({"evaluation_accuracy": [0.5, 2]}, "no valid evaluation_accuracy list (numbers from 0 to 1)"),
    ({"wall_seconds": "slow"}, "wall_seconds must be a number >= 0"),
    ({"wall_seconds": -1}, "wall_seconds must be a number >= 0"),
    ({"diverged": 3}, "diverged must be a text"),
    ({"worker": ["w"]}, "worker must be a text"),
    ({"values": [1]}, "values must be an object"),
    ({"warnings": "one"}, "warnings must be a list of texts"),
])
def test_a_sealed_record_with_impossible_values_is_skipped_with_a_warning(tmp_path, change, why):
    """Validated like a model file: the check finds damage, not intent; a wrong value is a corrupt line."""
    good, bad = record(key(0), 0.5, 0.0, 0, [0.5, 0.6]), {**record(key(1), 3.0, 0.0, 0, [0.5, 0.7]), **change}
    for k in (key(0), key(1)):
        fake_model(tmp_path, k)
    (tmp_path / "results.jsonl").write_text(_sealed_line(good) + "\n" + _sealed_line(bad) + "\n")
    with pytest.warns(RuntimeWarning, match=r"line 2 \(trial 0+1\) is corrupt: " + __import__("re").escape(why)):
        res = store.load_results(tmp_path)
    assert [r["key"] for r in res] == [key(0)]  # skipped: never reported as the best trial
    assert report.best_trial(res)["key"] == key(0)
    with pytest.warns(RuntimeWarning, match="moved to results.corrupt.jsonl"), store.ResultStore(tmp_path) as s:
        assert list(s.records) == [key(0)]  # a sweep moves it out and runs its trial again


def test_markup_and_terminal_escapes_in_a_record_are_shown_not_interpreted(tmp_path):
    from rich.console import Console

    evil = "[bold red]x[/]\x1b[2J\x1b]0;title\x07\u202e"
    trials = [{**record(key(0), 0.5, 0.0, 0, [0.5, 0.6]), "values": {"eta": 0.5, "act": evil, "$x$": "$\\sum$"}},
              {**record(key(1), 3.0, 0.0, 1, [0.5, 0.7]), "values": {"eta": 3.0, "act": "plain", "$x$": "y"}}]
    for t in trials:
        fake_model(tmp_path, t["key"])
    (tmp_path / "results.jsonl").write_text("".join(_sealed_line(t) + "\n" for t in trials))
    res = store.load_results(tmp_path)
    assert len(res) == 2  # valid records: what they hold is text
    shown = "[bold red]x[/]\\x1b[2J\\x1b]0;title\\x07\\u202e"
    console = Console(width=300, record=True, force_terminal=True, color_system="truecolor")
    console.print(report.rich_table(res, title=evil))
    ansi = console.export_text(styles=True)
    assert shown in ansi and "\x1b[2J" not in ansi and "\x07" not in ansi and "\u202e" not in ansi
    assert "31m" not in ansi and "[bold red]x[/]" in ansi  # no red: the markup was shown, not read
    assert shown in report.describe(res[0]) and "\x1b" not in report.describe(res[0])
    assert "\x1b" not in report.markdown_table(res) and shown.replace("|", "\\|") in report.markdown_table(res)
    # the plot: labels with $...$ are drawn as text, not as mathtext
    pytest.importorskip("matplotlib")
    labels = []
    import matplotlib.axes

    real = matplotlib.axes.Axes.legend

    def legend(self, *a, **k):
        labels.extend(self.get_legend_handles_labels()[1])
        return real(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.axes.Axes, "legend", legend)
        report.plot_sweep(res, tmp_path / "p.svg", title="$\\alpha$ net")
    assert labels and all("\x1b" not in label for label in labels)
    assert any("\\$\\sum\\$" in label for label in labels)  # $ escaped: shown as typed
