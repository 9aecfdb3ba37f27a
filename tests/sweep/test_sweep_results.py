"""The results folder (results.jsonl, written line by line, corrupt lines found) and the reports: table, best, plot."""

from __future__ import annotations

import json
import os

import pytest

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
