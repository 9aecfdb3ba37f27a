"""Hostile and broken model files, and saves interrupted at each step (issue 14, items 3 and 4).

Every malformed model file must be a ``ValueError`` naming the file, within a second and without a large
allocation; a save stopped anywhere must leave a loadable model, the old one or the new one."""

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import symbp as sb
from symbp.train import serialize

TIME_LIMIT = 3.0  # seconds: generous (shared CI cores); the checks themselves take milliseconds
PEAK_LIMIT = 16 << 20  # bytes allocated at most while refusing a file


def _model(sizes=(3, 4, 2), seed=0):
    return sb.Network(list(sizes), activation=sb.sigmoid, cost=sb.quadratic).compile(backend="numpy", seed=seed)


def _same(model, params):
    return all(np.array_equal(W, W2) and np.array_equal(b, b2) for (W, b), (W2, b2) in zip(model.params, params))


def _doc(tmp_path, name="m"):
    return json.loads((tmp_path / f"{name}.json").read_text())


def _write_doc(tmp_path, doc, name="m"):
    (tmp_path / f"{name}.json").write_text(json.dumps(doc))


def _set_npz(tmp_path, blob: bytes, name="m"):
    """Replace the parameter file and make the manifest's SHA-256 agree (so the deeper checks are reached)."""
    (tmp_path / f"{name}.npz").write_bytes(blob)
    doc = _doc(tmp_path, name)
    doc["params"]["sha256"] = hashlib.sha256(blob).hexdigest()
    _write_doc(tmp_path, doc, name)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_header(shape, descr="<f8", fortran=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue()


def _refused(path, match=None, names=None):
    """``sb.load(path)`` is a ValueError naming the file, quickly and without a large allocation."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=match) as info:
            sb.load(path)
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    msg = str(info.value)
    assert str(names or Path(path).with_suffix("")) in msg, msg
    assert "\n" not in msg, msg
    assert seconds < TIME_LIMIT, f"refusal took {seconds:.2f} s"
    assert peak < PEAK_LIMIT, f"refusal allocated {peak / 2**20:.1f} MiB"
    return msg


@pytest.fixture
def saved(tmp_path):
    model = _model()
    model.save(tmp_path / "m")
    return model


# -- file types and sizes -------------------------------------------------------------------------------
def _load_in_thread(path, seconds=10.0):
    result = {}

    def target():
        try:
            sb.load(path)
        except BaseException as exc:  # reported to the test
            result["exc"] = exc
        else:
            result["exc"] = None

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread, result


@pytest.mark.parametrize("which", ["json", "npz"])
def test_fifo_is_refused_without_hanging(tmp_path, saved, which):
    fifo = tmp_path / f"m.{which}"
    fifo.unlink()
    os.mkfifo(fifo)
    thread, result = _load_in_thread(tmp_path / "m")
    try:
        assert not thread.is_alive(), f"load hung on a FIFO as m.{which}"
        assert isinstance(result["exc"], ValueError), result
        assert str(fifo) in str(result["exc"]) and "FIFO" in str(result["exc"])
    finally:
        if thread.is_alive():  # release the stuck reader: a writer that closes at once gives it EOF
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(5)


@pytest.mark.parametrize("which", ["json", "npz"])
def test_symlink_to_dev_zero_is_refused_unread(tmp_path, saved, which):
    target = tmp_path / f"m.{which}"
    target.unlink()
    target.symlink_to("/dev/zero")
    msg = _refused(tmp_path / "m", match="regular file")
    assert "character device" in msg


@pytest.mark.parametrize("which", ["json", "npz"])
def test_directory_instead_of_file(tmp_path, saved, which):
    target = tmp_path / f"m.{which}"
    target.unlink()
    target.mkdir()
    _refused(tmp_path / "m", match="directory")


def test_oversized_json_is_refused_before_reading(tmp_path, saved):
    with open(tmp_path / "m.json", "ab") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB that would have to be read
    _refused(tmp_path / "m", match="more than")


# -- JSON structure ---------------------------------------------------------------------------------------
def test_deeply_nested_json(tmp_path, saved):
    (tmp_path / "m.json").write_text("[" * 200_000 + "]" * 200_000)
    _refused(tmp_path / "m", match="nested too deeply")


def test_deeply_nested_field(tmp_path, saved):
    doc = _doc(tmp_path)
    text = json.dumps(doc).replace('"cost": {', '"junk": ' + "[" * 100_000 + "]" * 100_000 + ', "cost": {')
    (tmp_path / "m.json").write_text(text)
    _refused(tmp_path / "m", match="nested too deeply")


def _set(doc, where, value):
    *keys, last = where
    for k in keys:
        doc = doc[k]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()


@pytest.mark.parametrize("where,value,match", [
    (("backend",), ["numba"], "backend"),
    (("backend",), "cuda", "unknown backend"),
    (("backend",), None, "backend"),
    (("layers", 0, "n"), "5", "'n' must be an integer"),
    (("layers", 1, "n"), 5.0, "'n' must be an integer"),
    (("layers", 1, "n"), True, "'n' must be an integer"),
    (("layers", 1, "n"), 0, "between 1"),
    (("layers", 1, "n"), -3, "between 1"),
    (("layers", 1, "n"), 10**30, "between 1"),
    (("layers", 1, "n"), _DELETE, "no 'n'"),
    (("layers", 1, "activation", "vector"), "yes", "'vector' must be true or false"),
    (("layers", 1, "activation", "name"), 5, "'name' must be a string"),
    (("layers", 1, "activation", "expr"), None, "'expr' must be a string"),
    (("layers", 1, "activation"), "sigmoid", "'activation' must be an object"),
    (("layers", 1, "activation"), _DELETE, "no 'activation'"),
    (("layers", 1, "kind"), "conv3d", "unknown layer kind"),
    (("layers", 1, "kind"), ["dense"], "'kind' must be a string"),
    (("layers", 1), [4, "sigmoid"], "layer 1 must be an object"),
    (("layers",), {"0": 3}, "'layers' must be a list"),
    (("layers",), [{"n": 3}], "2 to"),
    (("cost",), "quadratic", "cost must be an object"),
    (("cost",), _DELETE, "cost must be an object"),
    (("cost", "expr"), ["a - y"], "'expr' must be a string"),
    (("dtype",), ["float64"], "bad dtype"),
    (("dtype",), "float16", "bad dtype"),
    (("dtype",), {"kind": "f"}, "bad dtype"),
    (("version",), "1", "unsupported version"),
    (("version",), True, "unsupported version"),
    (("format",), ["symbp-model"], "format"),
    (("params",), _DELETE, "no 'params'"),
    (("params",), [], "'params' must be an object"),
    (("params", "sha256"), 12, "'sha256' must be a string"),
    (("params", "sha256"), "../../etc/passwd", "64 lowercase hex"),
    (("params", "file"), {"path": "/etc/passwd"}, "'file' must be a string"),
])
def test_wrong_field_types(tmp_path, saved, where, value, match):
    doc = _doc(tmp_path)
    _set(doc, where, value)
    _write_doc(tmp_path, doc)
    _refused(tmp_path / "m", match=match)


@pytest.mark.parametrize("text,match", [
    ('["symbp-model"]', "format"),
    ("null", "format"),
    ('{"format": "symbp-model", "version": 1, "layers": [{"n": ' + "9" * 5000 + "}]}", "corrupt or truncated"),
    ("\udcff", "corrupt or truncated"),
])
def test_malformed_json_documents(tmp_path, saved, text, match):
    (tmp_path / "m.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    _refused(tmp_path / "m", match=match)


def test_too_many_layers(tmp_path, saved):
    doc = _doc(tmp_path)
    doc["layers"] = doc["layers"][:1] + doc["layers"][1:2] * 5000
    _write_doc(tmp_path, doc)
    _refused(tmp_path / "m", match="2 to 1024")


# -- declared sizes against the parameter file ------------------------------------------------------------
def test_huge_declared_sizes_with_tiny_npz(tmp_path, saved):
    """[1000, 250000, 2] with the tiny .npz of [3, 4, 2]: 10⁹ units, refused from the file size."""
    doc = _doc(tmp_path)
    for entry, n in zip(doc["layers"], [1000, 250_000, 2]):
        entry["n"] = n
    _write_doc(tmp_path, doc)
    msg = _refused(tmp_path / "m", match="cannot hold", names=tmp_path / "m.npz")
    assert "[1000, 250000, 2]" in msg


def test_huge_declared_hidden_layer_with_agreeing_checksum(tmp_path, saved):
    """The same declaration with the checksum made to agree: still refused before any read."""
    doc = _doc(tmp_path)
    doc["layers"][1]["n"] = 250_000
    _write_doc(tmp_path, doc)
    _set_npz(tmp_path, (tmp_path / "m.npz").read_bytes())
    _refused(tmp_path / "m", match="cannot hold", names=tmp_path / "m.npz")


def _bomb(path: Path, shape, names=("W1",), inflate_to=None, level=1):
    """An .npz whose members have a valid .npy header for ``shape`` and a deflated body of zeros,
    written in 1 MiB chunks (this test's own memory stays small)."""
    header = _npy_header(shape)
    body = inflate_to if inflate_to is not None else int(np.prod(shape)) * 8
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name in names:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                f.write(header)
                left = body
                while left > 0:
                    f.write(chunk[:min(left, len(chunk))])
                    left -= len(chunk)


def _blob_into_manifest(tmp_path, npz_path):
    blob = npz_path.read_bytes()
    doc = _doc(tmp_path)
    doc["params"]["sha256"] = hashlib.sha256(blob).hexdigest()
    _write_doc(tmp_path, doc)
    return doc


def test_zip_bomb_declared_as_its_real_size(tmp_path, saved):
    """A ~1 MB .npz that inflates to 256 MiB, with layer sizes declared to match it and a valid checksum:
    refused from the file size, without decompressing."""
    n_in, n_out = 256, 131_072  # W1: 2**25 float64 = 256 MiB
    _bomb(tmp_path / "m.npz", (n_out, n_in))
    assert (tmp_path / "m.npz").stat().st_size < 4 << 20
    doc = _blob_into_manifest(tmp_path, tmp_path / "m.npz")
    doc["layers"][0]["n"], doc["layers"][1]["n"] = n_in, n_out
    _write_doc(tmp_path, doc)
    _refused(tmp_path / "m", match="cannot hold", names=tmp_path / "m.npz")


def test_zip_bomb_refused_from_its_headers(tmp_path, saved):
    """Members small enough on disk to pass the size check, whose stored size (32 MiB) disagrees with the
    header: refused from the zip directory, nothing decompressed."""
    _bomb(tmp_path / "m.npz", (4, 3), names=("W1",), inflate_to=32 << 20, level=9)
    with zipfile.ZipFile(tmp_path / "m.npz", "a") as zf:  # the other members, genuine
        for name, arr in (("b1", np.zeros(4)), ("W2", np.zeros((2, 4))), ("b2", np.zeros(2))):
            buf = io.BytesIO()
            np.save(buf, arr)
            zf.writestr(f"{name}.npy", buf.getvalue())
    assert (tmp_path / "m.npz").stat().st_size < 48 << 10
    _blob_into_manifest(tmp_path, tmp_path / "m.npz")
    _refused(tmp_path / "m", match="W1.npy holds", names=tmp_path / "m.npz")


def test_inflation_ratio_is_bounded(tmp_path, saved):
    """Sizes that all agree, a file large enough for the declared arrays, but one member inflating more than
    the bounded ratio: refused from its directory entry."""
    n = 4096
    _bomb(tmp_path / "m.npz", (n, 3), level=9)  # W1: 96 KiB of zeros in about 100 bytes
    with zipfile.ZipFile(tmp_path / "m.npz", "a") as zf:  # the others stored: the file passes the size check
        for name, arr in (("b1", np.ones(n)), ("W2", np.ones((2, n))), ("b2", np.ones(2))):
            zf.writestr(f"{name}.npy", _npy(arr))
    doc = _blob_into_manifest(tmp_path, tmp_path / "m.npz")
    doc["layers"][1]["n"] = n
    _write_doc(tmp_path, doc)
    _refused(tmp_path / "m", match="W1.npy inflates", names=tmp_path / "m.npz")


def _arrays(model):
    return {f"{k}{l}": arr for l, pair in enumerate(model.params, start=1) for k, arr in zip("Wb", pair)}


@pytest.mark.parametrize("change,match", [
    (lambda a: a.update(W1=a["W1"][:, :2]), r"W1 has shape \(4, 2\)"),
    (lambda a: a.update(W1=np.zeros((3, 4))), r"W1 has shape \(3, 4\)"),
    (lambda a: a.update(b2=np.zeros((2, 1))), r"b2 has shape"),
    (lambda a: a.update(W1=a["W1"].astype(np.int64)), "dtype int64"),
    (lambda a: a.update(W1=a["W1"].astype(np.complex128)), "dtype complex128"),
    (lambda a: a.update(W1=a["W1"].astype(np.float32)), "dtype float32"),
    (lambda a: a.update(W1=np.asfortranarray(a["W1"])), "Fortran order"),
    (lambda a: a.update(W1=np.array([None] * 12, dtype=object).reshape(4, 3)), "dtype object|W1.npy holds"),
    (lambda a: a.update(W3=np.zeros(2)), "parameter arrays"),
    (lambda a: a.pop("b1"), "parameter arrays"),
])
def test_array_headers_checked_against_declaration(tmp_path, saved, change, match):
    arrays = _arrays(saved)
    change(arrays)
    _set_npz(tmp_path, _npz(**arrays))
    _refused(tmp_path / "m", match=match)


def _zip_of(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("w1,match", [
    (_npy(np.zeros((4, 3))) + b"\0" * 8, "W1.npy holds"),  # data beyond what the header declares
    (_npy(np.zeros((4, 3)))[:-8], "W1.npy holds"),  # truncated data
    (b"\x93NUMPY\x02\x00" + (2**32 - 16).to_bytes(4, "little") + b"{" * 100, "unreadable"),  # 4 GB header
    (b"\x93NUMPY\x03\x00" + _npy(np.zeros((4, 3)))[8:], "version"),
    (b"PK garbage" * 20, "unreadable"),
    (_npy_header((4, 3), descr="|O") + b"\0" * 96, "dtype object"),
])
def test_lying_npy_members(tmp_path, saved, w1, match):
    arrays = {f"{k}.npy": _npy(v) for k, v in _arrays(saved).items()}
    arrays["W1.npy"] = w1
    _set_npz(tmp_path, _zip_of(arrays))
    _refused(tmp_path / "m", match=match)


def test_not_a_zip_archive(tmp_path, saved):
    _set_npz(tmp_path, b"\0" * 600)
    _refused(tmp_path / "m", match="unreadable parameter archive")


def test_deflated_parameters_still_load(tmp_path, saved):
    """np.savez_compressed output is a well-formed parameter file too (ratio within the bound)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **_arrays(saved))
    _set_npz(tmp_path, buf.getvalue())
    assert _same(sb.load(tmp_path / "m"), saved.params)


# -- building the network: every refusal names the file ------------------------------------------------
@pytest.mark.parametrize("where,value,match", [
    (("layers", 1, "activation", "expr"), "1", "does not depend on z"),
    (("layers", 1, "activation", "name"), "", "non-empty"),
    (("layers", 1, "activation", "vector"), True, "output layer only|vector"),
    (("cost", "expr"), "y", "does not depend"),
    (("cost", "name"), "", "non-empty"),
    (("layers", 1, "kind"), "input", "layer 1: the first layer, and only the first"),
    (("layers", 0, "kind"), "dense", "layer 0: the first layer"),
])
def test_build_errors_name_the_file(tmp_path, saved, where, value, match):
    doc = _doc(tmp_path)
    _set(doc, where, value)
    _write_doc(tmp_path, doc)
    msg = _refused(tmp_path / "m", match=match)
    assert str(tmp_path / "m.json") in msg


def test_bad_backend_argument(tmp_path, saved):
    with pytest.raises(ValueError, match="backend must be one of"):
        serialize.load(tmp_path / "m", backend="cuda")


def test_explicit_kind_fields_load(tmp_path, saved):
    doc = _doc(tmp_path)
    doc["layers"][0]["kind"] = "input"
    for entry in doc["layers"][1:]:
        entry["kind"] = "dense"
    _write_doc(tmp_path, doc)
    assert _same(sb.load(tmp_path / "m"), saved.params)


def _registered(kind):
    import symbp.layers

    if kind not in getattr(symbp.layers, "LAYER_KINDS", {}):
        pytest.skip(f"no {kind!r} layer kind registered in symbp.layers")


def _hand_doc():
    """The manifest of a [3, 4, 2] sigmoid network, written by hand (nothing compiled)."""
    act = {"name": "sigmoid", "expr": "1/(1 + exp(-z))", "vector": False}
    return {"format": "symbp-model", "version": 1,
            "layers": [{"n": 3}, {"n": 4, "activation": act}, {"n": 2, "activation": act}],
            "cost": {"name": "quadratic", "expr": "(a - y)**2/2"}, "dtype": "float64", "backend": "numpy",
            "params": {"file": "m.npz", "sha256": "0" * 64}}


def test_registered_kind_decodes_with_parameter_numbering(tmp_path):
    """A kind registered in symbp.layers but without a decoder here is built by its from_config; parameter
    arrays are numbered by parameterised layer (W1, b1, W2, b2 around a dropout layer)."""
    _registered("dropout")
    doc = _hand_doc()
    doc["layers"].insert(2, {"kind": "dropout", "p": 0.5})
    m = serialize._decode_manifest(json.dumps(doc).encode(), tmp_path / "m.json")
    assert m.arrays == {"W1": (4, 3), "b1": (4,), "W2": (2, 4), "b2": (2,)}


@pytest.mark.parametrize("entry,match", [({"kind": "dropout", "p": "x"}, "probability"),
                                         ({"kind": "dropout"}, "KeyError")])
def test_registered_kind_refusals_name_the_file(tmp_path, entry, match):
    _registered("dropout")
    doc = _hand_doc()
    doc["layers"].insert(2, entry)
    _write_doc(tmp_path, doc)
    msg = _refused(tmp_path / "m", match=match)
    assert "layer 2" in msg


# -- saving: interrupted at each step -------------------------------------------------------------------
def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


class _Stop(Exception):
    pass


def _fail_replace(monkeypatch, nth, exc, after):
    """os.replace raises ``exc`` at its ``nth`` call, before or after doing the rename."""
    real = os.replace
    calls = []

    def replace(src, dst, *args, **kwargs):
        calls.append((src, dst))
        if len(calls) == nth and not after:
            raise exc
        real(src, dst, *args, **kwargs)
        if len(calls) == nth and after:
            raise exc

    monkeypatch.setattr(os, "replace", replace)
    return calls


# (nth call, after it?) → which model a reader then sees; the commit is the 2nd rename (the manifest)
_STEPS = [(1, False, "old"), (1, True, "old"), (2, False, "old"), (2, True, "new"), (3, False, "new"),
          (3, True, "new")]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt(), _Stop("boom")],
                         ids=["OSError", "KeyboardInterrupt", "Exception"])
@pytest.mark.parametrize("nth,after,expect", _STEPS)
def test_interrupted_save_leaves_a_loadable_model(tmp_path, monkeypatch, nth, after, expect, exc):
    old, new = _model(seed=1), _model((3, 5, 2), seed=2)
    old.save(tmp_path / "m")
    _fail_replace(monkeypatch, nth, exc, after)
    with pytest.raises(type(exc)):
        new.save(tmp_path / "m")
    monkeypatch.undo()
    left = _files(tmp_path)
    assert not [n for n in left if ".tmp-" in n], left  # an interrupted save removes its temporary files
    if expect == "old":
        assert left == ["m.json", "m.npz"], left
    loaded = sb.load(tmp_path / "m")
    assert loaded.sizes == (old if expect == "old" else new).sizes
    assert _same(loaded, (old if expect == "old" else new).params)
    third = _model(seed=3)
    third.save(tmp_path / "m")  # the next save finishes or discards what was left, and leaves nothing else
    assert _files(tmp_path) == ["m.json", "m.npz"]
    assert _same(sb.load(tmp_path / "m"), third.params)


def test_save_after_a_committed_interrupted_save_keeps_it(tmp_path, monkeypatch):
    """Manifest committed, rename of the pending .npz not done; then another save is stopped before its
    commit: the committed model must survive (the second save first finishes the first's rename)."""
    old, new, third = _model(seed=1), _model((3, 5, 2), seed=2), _model(seed=3)
    old.save(tmp_path / "m")
    _fail_replace(monkeypatch, 3, KeyboardInterrupt(), after=False)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "m")
    monkeypatch.undo()
    assert "m.npz.new" in _files(tmp_path)
    calls = _fail_replace(monkeypatch, 3, KeyboardInterrupt(), after=False)  # recovery, pending, (manifest)
    with pytest.raises(KeyboardInterrupt):
        third.save(tmp_path / "m")
    monkeypatch.undo()
    assert Path(calls[0][1]).name == "m.npz" and Path(calls[2][1]).name == "m.json"
    assert _files(tmp_path) == ["m.json", "m.npz"]
    assert _same(sb.load(tmp_path / "m"), new.params)


def test_first_save_interrupted_leaves_nothing(tmp_path, monkeypatch):
    _fail_replace(monkeypatch, 2, KeyboardInterrupt(), after=False)
    with pytest.raises(KeyboardInterrupt):
        _model().save(tmp_path / "m")
    monkeypatch.undo()
    assert _files(tmp_path) == []


def test_error_while_writing_removes_temporary_file(tmp_path, monkeypatch):
    _model(seed=1).save(tmp_path / "m")
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(OSError, match=r"cannot save the model to .*m\.json: Input/output error"):
        _model(seed=2).save(tmp_path / "m")
    monkeypatch.setattr(os, "fsync", real)
    assert _files(tmp_path) == ["m.json", "m.npz"]


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from types import SimpleNamespace
    import numpy as np
    import symbp as sb
    from symbp.train import serialize

    path, what, nth, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "after"
    net = sb.Network([3, 5, 2], activation=sb.sigmoid, cost=sb.quadratic)
    rng = np.random.default_rng(7)
    params = [(rng.standard_normal((5, 3)), rng.standard_normal(5)), (rng.standard_normal((2, 5)),
              rng.standard_normal(2))]
    model = SimpleNamespace(params=params, network=net, dtype=np.dtype("float64"), backend="numpy")
    real = getattr(os, what)
    calls = []

    def hook(*args, **kwargs):
        calls.append(args)
        if len(calls) == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if len(calls) == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(os, what, hook)
    serialize.save(model, path)
    print("not killed")
""")


def _killer_params():
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((5, 3)), rng.standard_normal(5)), (rng.standard_normal((2, 5)),
                                                                      rng.standard_normal(2))]


# SIGKILL at: the fsync of the temporary .npz (written, not renamed), each rename before and after it.
_KILLS = [("fsync", 1, "before", "old"), ("replace", 1, "before", "old"), ("replace", 1, "after", "old"),
          ("replace", 2, "before", "old"), ("replace", 2, "after", "new"), ("replace", 3, "after", "new")]


@pytest.mark.parametrize("what,nth,when,expect", _KILLS)
def test_sigkill_during_save_leaves_a_loadable_model(tmp_path, what, nth, when, expect):
    old = _model(seed=1)
    old.save(tmp_path / "m")
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(tmp_path / "m"), what, str(nth), when],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    loaded = sb.load(tmp_path / "m")
    assert _same(loaded, old.params if expect == "old" else _killer_params())
    third = _model(seed=3)
    third.save(tmp_path / "m")  # stale temporary files of the killed process are removed
    assert _files(tmp_path) == ["m.json", "m.npz"]
    assert _same(sb.load(tmp_path / "m"), third.params)


def test_reader_racing_saves_sees_old_or_new(tmp_path):
    """A thread reading the model files while the main thread saves over them, again and again, always finds a
    manifest and the parameters it commits to (the file part of load; compiling is not what races)."""
    models = [_model(seed=1), _model((3, 5, 2), seed=2)]
    models[0].save(tmp_path / "m")
    jpath, npath = serialize._paths(tmp_path / "m")
    stop, seen, errors = threading.Event(), set(), []

    def reader():
        while not stop.is_set():
            try:
                m, _, blob = serialize._read_model_files(jpath, npath)
                seen.add(hashlib.sha256(blob).hexdigest())
                serialize._read_arrays(blob, m, npath, jpath)
            except Exception as exc:  # reported to the test
                errors.append(exc)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for i in range(40):
            models[i % 2].save(tmp_path / "m")
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors[0]
    assert seen


def test_stale_temporary_files_cleanup_is_specific(tmp_path):
    dead = 2**22 + 12345  # above Linux's pid_max: no such process
    stale = [f".m.npz.tmp-{dead}-0123456789abcdef", f".m.json.tmp-{dead}-fedcba9876543210",
             f".m.npz.tmp-{os.getpid()}-00000000000000aa"]
    kept = [".m.npz.tmp-1-0123456789abcdef",  # pid 1 is alive: maybe a save in progress
            f".other.npz.tmp-{dead}-0123456789abcdef", f".m.b.npz.tmp-{dead}-0123456789abcdef", "m.tmp-x",
            f".m.npz.tmp-{dead}-notahexnumber"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    _model().save(tmp_path / "m")
    assert _files(tmp_path) == sorted(kept + ["m.json", "m.npz"])


# -- saving: umask and errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_respect_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        jpath, npath = _model().save(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(jpath.stat().st_mode) == mode
    assert stat.S_IMODE(npath.stat().st_mode) == mode


def _one_line_naming(exc, path):
    msg = str(exc)
    assert "\n" not in msg and str(path) in msg, msg


def test_save_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile" / "model", tmp_path / "afile" / "sub" / "model"):
        with pytest.raises(ValueError, match="is a file, not a folder") as info:
            _model().save(target)
        _one_line_naming(info.value, target)
        assert str(tmp_path / "afile") in str(info.value)
    assert _files(tmp_path) == ["afile"]


@pytest.mark.parametrize("which", ["m.json", "m.npz", "m.npz.new"])
def test_save_where_a_target_is_a_directory(tmp_path, which):
    (tmp_path / which).mkdir()
    with pytest.raises(ValueError, match="is a folder") as info:
        _model().save(tmp_path / "m")
    _one_line_naming(info.value, tmp_path / which)
    assert _files(tmp_path) == [which]  # no orphan .npz beside it


def test_save_where_json_is_a_directory_after_writing(tmp_path, monkeypatch):
    """If the manifest's place becomes unusable while saving, the parameters written are removed."""
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == "m.json":
            (tmp_path / "m.json").mkdir()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as info:
        _model().save(tmp_path / "m")
    _one_line_naming(info.value, tmp_path / "m.json")
    assert _files(tmp_path) == ["m.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_save_into_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as info:
            _model().save(folder / "m")
        _one_line_naming(info.value, folder / "m.json")
        assert _files(folder) == []
    finally:
        folder.chmod(0o700)


def test_save_into_unwritable_folder_simulated(tmp_path, monkeypatch):
    """As above, for a root user: creating a file in the folder fails with EACCES."""
    real = os.open

    def deny(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(PermissionError, match="cannot save the model to") as info:
        _model().save(tmp_path / "m")
    _one_line_naming(info.value, tmp_path / "m.json")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("path", ["", ".", "..", "dir/.."])
def test_save_and_load_need_a_file_name(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="must name a file"):
        _model().save(path)
    with pytest.raises(ValueError, match="must name a file"):
        sb.load(path)
    assert _files(tmp_path) == []


def test_save_refuses_non_finite_parameters(tmp_path):
    model = _model()
    params = model.params
    params[1][0][0, 0] = np.nan
    stub = SimpleNamespace(params=params, network=model.network, dtype=model.dtype, backend="numpy")
    with pytest.raises(ValueError, match="W2 contains NaN"):
        serialize.save(stub, tmp_path / "m")
    assert _files(tmp_path) == []


def test_resave_replaces_and_round_trips(tmp_path):
    first, second = _model(seed=1), _model((3, 6, 2), seed=2)
    first.save(tmp_path / "m")
    second.save(tmp_path / "m.json")
    assert _files(tmp_path) == ["m.json", "m.npz"]
    assert _same(sb.load(tmp_path / "m.npz"), second.params)
