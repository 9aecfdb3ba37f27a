"""A network as plain JSON, the form in which a sweep ships it to its workers.

Takes: a ``Network``.  Gives: ``network_declaration(net)``, a JSON-able dict holding the same layer table and
cost that ``symbp.train.manifest`` encodes into a model file (``{"kind": ..., **layer.config()}`` per layer,
the cost as parser text), and ``network_from_declaration(doc)``, the ``Network`` rebuilt from such a dict by
the model-file decoder itself: every field type-checked, every layer decoded by the model-file decoders, every
expression re-read by the whitelist parser.  No sympy object and no pickle crosses the wire; a declaration
that is not one is a ``ValueError`` saying what is wrong.

``declaration_text(doc)`` is its canonical JSON text (sorted keys, no spaces): the identity of a network in
trial keys and in the per-process cache of rebuilt networks.
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "symbp-network"
VERSION = 1
#: how a declaration is named in the model-file reader's error messages
_WHERE = Path("<network declaration>")


def network_declaration(net) -> dict:
    """The layers and cost of ``net`` as the model-file format writes them (plain data, expressions as text)."""
    from symbp.train.manifest import encode_layer

    return {"format": FORMAT, "version": VERSION,
            "layers": [encode_layer(layer) for layer in net.layers],
            "cost": {"name": net.cost.name, "expr": net.cost.text}}


def declaration_text(doc: dict) -> str:
    """Canonical JSON text of a declaration: equal networks give equal text."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def network_from_declaration(doc):
    """The ``Network`` of a declaration, read by the model-file decoder (``symbp.train.manifest``): the same
    checks as for a model file, the same whitelist parser for every expression."""
    from symbp.train import manifest
    from symbp.train.safe_read import MAX_JSON

    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{_WHERE}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"{_WHERE}: expected a dict with format {FORMAT!r} and version {VERSION}")
    # The manifest decoder wants a whole model file; the fields beyond the layers and the cost are fixed here
    # (a placeholder checksum: no parameter file is read).
    fields = {"format": manifest.FORMAT, "version": manifest.VERSION, "layers": doc.get("layers"),
              "cost": doc.get("cost"), "dtype": "float64", "backend": "numpy",
              "params": {"file": "", "sha256": "0" * 64}}
    raw = json.dumps(fields).encode()
    if len(raw) > MAX_JSON:
        raise ValueError(f"{_WHERE}: more than {MAX_JSON} bytes")
    m = manifest.decode_manifest(raw, _WHERE)
    return manifest.build_network(m, _WHERE)
