"""Reading and writing the benchmarks' JSON results: atomic writes, strict JSON."""

from __future__ import annotations

import json
import math
import os


def read_json(path: str) -> dict:
    """The JSON object in ``path``; ``{}`` when there is no such file (a run not started)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_json(path: str, value) -> None:
    """Writes ``value`` atomically (a killed run never leaves half a file); NaN and infinities
    become null, numpy scalars plain numbers, keys strings (strict JSON)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(plain(value), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def plain(value):
    """``value`` with only JSON types: dicts, lists, str, int, finite float, bool, None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
