"""sb.sweep on a LocalCluster of two worker processes on loopback: the same results as in-process, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
import sweep_kit as kit

import symbp as sb
from symbp.sweep import engine

pytest.importorskip("distributed")

GRID = {"eta": [0.5, 3.0], "lmbda": [0.0, 2.0], "seed": [0, 1]}


def run(client, out, grid=GRID, **kw):
    kw.setdefault("epochs", 2)
    if "batch_size" not in grid:
        kw.setdefault("batch_size", 10)
    return sb.sweep(kit.network(), grid, kit.TRAIN, kit.VALID, out=out, client=client, progress=False, **kw)


def lines(out):
    return (out / "results.jsonl").read_text().splitlines()


def test_cluster_gives_the_in_process_results_bit_for_bit(cluster, tmp_path):
    lc, client = cluster
    # the workers: processes on loopback, one thread each, BLAS and numba threads pinned to one
    info = client.scheduler_info(n_workers=-1)
    assert info["address"].startswith("tls://127.0.0.1:")  # TLS, with the cluster's own certificate
    assert len(info["workers"]) == 2 and all(w.startswith("tls://127.0.0.1:") for w in info["workers"])
    assert all(w["nthreads"] == 1 for w in info["workers"].values())
    env = client.run(lambda: {k: os.environ.get(k) for k in engine.WORKER_ENV})
    assert all(e == engine.WORKER_ENV for e in env.values())
    pids = set(client.run(os.getpid).values())
    assert len(pids | {os.getpid()}) == 3  # separate processes
    # every socket the cluster listens on (scheduler, its HTTP server, nannies, workers) is on loopback
    psutil = pytest.importorskip("psutil")
    listening = [c.laddr for pid in pids | {os.getpid()}
                 for c in getattr(psutil.Process(pid), "net_connections", psutil.Process(pid).connections)("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 5 and all(a.ip == "127.0.0.1" for a in listening), listening
    assert 8787 not in {a.port for a in listening} and 8786 not in {a.port for a in listening}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run(client, tmp_path)
    assert not [str(w.message) for w in caught if "warmed" in str(w.message)]  # the cache was warmed first
    assert len(results) == 8 and not results.failed
    assert [(r["eta"], r["lmbda"], r["seed"]) for r in results] == [
        (e, l, s) for e in GRID["eta"] for l in GRID["lmbda"] for s in GRID["seed"]]
    net = kit.network()
    for r in results:
        assert r["params"] == {"eta": r["eta"], "lmbda": r["lmbda"], "batch_size": 10, "epochs": 2}
        hist, params = kit.reference(net, r)
        assert kit.same_history(hist, r["history"]), r
        assert r["evaluation_accuracy"] == hist["evaluation_accuracy"] and len(r["evaluation_accuracy"]) == 2
        assert r["best_epoch"] == hist["best_epoch"]
        assert r["best_accuracy"] == hist["evaluation_accuracy"][hist["best_epoch"] - 1]
        assert kit.same_params(sb.load(r["model"]).params, params)  # the saved model is the trial's
        assert r["wall_seconds"] > 0 and r["worker"] in info["workers"] and r["diverged"] is None
    assert len(lines(tmp_path)) == 8


def test_a_second_run_runs_nothing_new(cluster, tmp_path, monkeypatch):
    _, client = cluster
    first = run(client, tmp_path, grid={"eta": [0.5, 3.0]})
    before = lines(tmp_path)

    def no_engine(*a, **k):
        raise AssertionError("nothing should run")

    with monkeypatch.context() as mp:
        mp.setattr(engine, "_run", no_engine)
        again = run(None, tmp_path, grid={"eta": [0.5, 3.0]}, workers=1)  # no cluster is even started
        # the same trial written differently: 3 for 3.0, a fixed keyword at fit's own default
        same = run(None, tmp_path, grid={"eta": [3, 0.5], "lmbda": [0.0]}, workers=1)
    assert again == first and lines(tmp_path) == before
    assert sorted(r["key"] for r in same) == sorted(r["key"] for r in first)
    # one more value: only its trial runs
    more = run(client, tmp_path, grid={"eta": [0.5, 3.0, 1.0]})
    assert len(more) == 3 and lines(tmp_path)[:2] == before and len(lines(tmp_path)) == 3


def test_a_corrupt_line_is_reported_and_its_trial_run_again(cluster, tmp_path):
    _, client = cluster
    first = run(client, tmp_path, grid={"eta": [0.5, 1.0, 3.0]})
    assert not first.failed, first.failed
    text = lines(tmp_path)
    victim = json.loads(text[1])["key"]
    edited = json.loads(text[2])
    edited["best_accuracy"] = 1.0  # valid JSON, wrong content: its check no longer matches
    broken = [text[0], text[1][: len(text[1]) // 2], json.dumps(edited)]
    (tmp_path / "results.jsonl").write_text("\n".join(broken) + "\n")
    with pytest.warns(RuntimeWarning) as caught:
        again = run(client, tmp_path, grid={"eta": [0.5, 1.0, 3.0]})
    messages = [str(w.message) for w in caught]
    assert any("line 2" in m and victim in m and "corrupt" in m for m in messages), messages
    assert any("line 3" in m and "check" in m for m in messages), messages
    # the trials re-run give the same results; the good line is kept as it was
    def strip(results):
        return [{k: v for k, v in r.items() if k not in ("wall_seconds", "compile_seconds", "worker")}
                | {"history": {k: v for k, v in r["history"].items() if k != "epoch_seconds"}} for r in results]

    assert strip(first) == strip(again)
    now = lines(tmp_path)
    assert now[0] == text[0] and len(now) == 3
    assert sorted(json.loads(line)["key"] for line in now) == sorted(r["key"] for r in first)
    moved = (tmp_path / "results.corrupt.jsonl").read_text().splitlines()
    assert moved == broken[1:]


def test_a_scheduler_address_is_a_client(cluster, tmp_path, monkeypatch):
    lc, _ = cluster
    results = run(lc.scheduler_address, tmp_path, grid={"eta": [0.5]}, security=lc.security)
    assert len(results) == 1 and not results.failed and results[0]["worker"].startswith("tls://127.0.0.1:")
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)  # for the address nothing listens on
    with pytest.raises(ValueError, match="cannot reach the dask scheduler"):
        run("tcp://127.0.0.1:9", tmp_path / "other", grid={"eta": [0.5]})


@pytest.mark.slow
def test_a_killed_worker_loses_no_trial(cluster, tmp_path):
    _, client = cluster
    train = kit.data(12000, seed=3)
    grid = {"eta": [0.1, 0.2], "seed": [0]}
    box = {}

    def background():
        try:
            box["results"] = sb.sweep(kit.network(), grid, train, kit.VALID, epochs=400, batch_size=1, out=tmp_path,
                                      client=client, progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    thread = threading.Thread(target=background)
    thread.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        for address, keys in client.processing().items():
            trial = [k for k in keys if str(k).startswith("symbp-trial-")]
            if trial:
                victim = (address, str(trial[0]).split("-")[2])
                break
        time.sleep(0.02)
    assert victim is not None, "no trial was seen running"
    time.sleep(0.5)  # well inside the trial (two to three seconds of training)
    pid = client.run(os.getpid, workers=[victim[0]])[victim[0]]
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    results = box["results"]
    assert len(results) == 2 and not results.failed
    assert victim[1] in {r["key"] for r in results}  # the killed worker's trial was run again
    assert all(r["worker"] != victim[0] for r in results if r["key"] == victim[1])
    (r,) = [r for r in results if r["key"] == victim[1]]
    hist, params = kit.reference(kit.network(), r, train=train)
    assert kit.same_history(hist, r["history"]) and kit.same_params(sb.load(r["model"]).params, params)
    assert len(lines(tmp_path)) == 2


def test_ctrl_c_cancels_the_running_trials_and_keeps_the_finished(cluster, tmp_path, monkeypatch):
    _, client = cluster
    from symbp.sweep import store

    grid = {"eta": [0.5, 1.0, 2.0, 3.0]}
    append = store.ResultStore.append
    calls = []

    def interrupted(self, record):
        calls.append(record["key"])
        out = append(self, record)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return out

    with monkeypatch.context() as mp:
        mp.setattr(store.ResultStore, "append", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(client, tmp_path, grid=grid, epochs=3)
    assert len(lines(tmp_path)) == 1
    deadline = time.monotonic() + 20
    while any(str(k).startswith("symbp-trial-") for keys in client.processing().values() for k in keys):
        assert time.monotonic() < deadline, "trials still running after the interrupt"
        time.sleep(0.05)
    results = run(client, tmp_path, grid=grid, epochs=3)
    assert len(results) == 4 and len(lines(tmp_path)) == 4 and lines(tmp_path)[0].find(calls[0]) > 0


def test_a_diverging_trial_is_kept_with_its_history(cluster, tmp_path):
    _, client = cluster
    X, y = kit.TRAIN
    bad = (X * 1e3, y)  # huge inputs and a huge eta: the weights overflow in the first epochs
    results = sb.sweep(kit.network(), {"eta": [1e300]}, bad, kit.VALID, epochs=3, out=tmp_path, client=client,
                       progress=False, batch_size=10)
    assert len(results) == 1 and not results.failed
    r = results[0]
    assert r["diverged"] and "diverged" in r["diverged"]
    assert len(r["evaluation_accuracy"]) < 3


def test_a_value_fit_refuses_is_a_failure_not_a_result(cluster, tmp_path):
    _, client = cluster
    with pytest.warns(RuntimeWarning, match="batch_size"):
        results = run(client, tmp_path, grid={"batch_size": [10, 100000]})
    assert len(results) == 1 and results[0]["batch_size"] == 10
    assert len(results.failed) == 1 and "batch_size" in results.failed[0]["error"]
    assert len(lines(tmp_path)) == 1


def test_keywords_other_stages_add_to_fit_sweep_too(cluster, tmp_path):
    """momentum, schedule, an sb.Regularizer (sent as its config, rebuilt by the whitelist parser on the worker)."""
    _, client = cluster
    regularizers = pytest.importorskip("symbp.regularizers")
    if not {"regularizer", "momentum"} <= set(engine.fit_parameters()):
        pytest.skip("Model.fit has no regularizer= / momentum= here")
    grid = {"regularizer": [regularizers.L1(1.0), None], "momentum": [0.0, 0.5]}
    results = run(client, tmp_path, grid=grid)
    assert len(results) == 4 and not results.failed
    net = kit.network()
    for r in results:
        hist, params = kit.reference(net, r)
        assert kit.same_history(hist, r["history"]) and kit.same_params(sb.load(r["model"]).params, params)
    assert results[0]["regularizer"]["config"]["strength"] == 1.0


def test_warming_runs_each_set_of_fit_keywords_on_the_trials_data():
    """In-process: fit's own defaults (batch_size 10) and a given batch size warm; a value fit refuses is named."""
    job = {"network": kit.network().config(), "backend": "numba", "dtype": "float64",
           "fits": [{}, {"eta": 0.5, "batch_size": 7}]}
    assert engine.warm_kernels([job], *kit.TRAIN, *kit.VALID) == []
    assert engine.warm_kernels([job], *kit.TRAIN) == []  # no evaluation data
    (problem,) = engine.warm_kernels([{**job, "fits": [{"input_scale": 0.5}]}], *kit.TRAIN)
    assert problem.startswith("input_scale=0.5: ValueError: input_scale is for uint8 inputs")


def test_the_progress_bar_counts_done_running_left():
    """The bar's counts, from the workers' start/end events and the client's saves (out of order as they come)."""
    bar = engine._Progress(False, total=4, before=1)

    def events(*pairs):
        for key, event in pairs:
            if event == "saved":
                bar.finished(key)
            else:
                bar.event(("time", {"key": key, "event": event}))

    events(("a", "start"), ("b", "start"), ("a", "end"), ("c", "start"))  # c starts before a is saved
    assert bar._text() == "done 0 (+1 from before) · running 2 · saving 1 · left 1"
    events(("a", "saved"), ("b", "end"), ("a", "end"))  # a late event of a saved trial changes nothing
    assert bar._text() == "done 1 (+1 from before) · running 1 · saving 1 · left 1"
    events(("c", "start"))  # c's worker died: c starts again elsewhere
    events(("b", "saved"), ("c", "saved"), ("d", "start"), ("d", "saved"))
    assert bar._text() == "done 4 (+1 from before) · running 0 · left 0"


# -- the grid, without a cluster ----------------------------------------------------------------------------------
def test_grid_names_are_fit_keywords(tmp_path):
    with pytest.raises(ValueError, match="not a keyword of Model.fit.*eta, lmbda"):
        run(None, tmp_path, grid={"etta": [1.0]})
    with pytest.raises(ValueError, match="set by the sweep"):
        run(None, tmp_path, grid={"callback": [None]})
    with pytest.raises(ValueError, match="plain data"):
        run(None, tmp_path, grid={"eta": [object()]})
    with pytest.raises(ValueError, match="seed"):
        run(None, tmp_path, grid={"seed": [-1]})
    with pytest.raises(ValueError, match="empty"):
        run(None, tmp_path, grid={"eta": []})
    with pytest.raises(ValueError, match="both"):
        run(None, tmp_path, grid={"epochs": [1, 2]}, epochs=3)
    assert not (tmp_path / "results.jsonl").exists()


def test_a_new_fit_keyword_is_a_grid_name_at_once(monkeypatch):
    from symbp.train.model import Model

    original = Model.fit

    def fit(self, training_data, epochs=30, batch_size=10, eta=3.0, lmbda=0.0, evaluation_data=None,
            momentum=0.0, seed=None, progress=None, callback=None):
        return original(self, training_data, epochs=epochs, batch_size=batch_size, eta=eta, lmbda=lmbda,
                        evaluation_data=evaluation_data, seed=seed, progress=progress, callback=callback)

    monkeypatch.setattr(Model, "fit", fit)
    trials, names = engine.expand_grid({"momentum": [0.0, 0.9], "seed": [3]}, 2, {"eta": np.float64(0.5)})
    assert names == ["momentum"]
    assert [t[2] for t in trials] == [{"eta": 0.5, "epochs": 2, "momentum": 0.0},
                                      {"eta": 0.5, "epochs": 2, "momentum": 0.9}]
    decl = {"x": 1}
    k0 = engine.trial_key(decl, {}, trials[0][2], 3, {})
    assert k0 == engine.trial_key(decl, {}, {"eta": 0.5, "epochs": 2}, 3, {})  # momentum=0.0 is fit's default
    assert k0 != engine.trial_key(decl, {}, trials[1][2], 3, {})
    assert k0 != engine.trial_key(decl, {}, trials[0][2], 4, {})


def test_the_network_travels_as_its_declaration():
    from symbp.train.manifest import network_from_config, portable_config

    net = sb.Network([sb.Input(6), sb.Dense(5, sb.Activation.parse("softsign", "z/(1+abs(z))")), sb.Dropout(0.25),
                      sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    doc = portable_config(net)
    assert doc == net.config()
    json.dumps(doc)  # plain data
    back = network_from_config(json.loads(json.dumps(doc)))
    assert repr(back) == repr(net) and back.config() == doc
    hostile = json.loads(json.dumps(doc))
    hostile["layers"][1]["activation"]["expr"] = "__import__('os').system('true')"
    with pytest.raises(ValueError, match="network declaration"):
        network_from_config(hostile)
