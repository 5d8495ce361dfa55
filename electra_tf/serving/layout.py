"""What TF Serving expects of an export: the version layout and which ops its server has.

Layout: ``exports/NAME/<version>/`` with integer versions (TF Serving serves the highest);
``assets.extra/`` holds the warm-up requests TF Serving replays on load and our own metadata.

Ops: TF Serving's model server links TensorFlow's ops and ``@org_tensorflow_text//tensorflow_text:
ops_lib`` (``tensorflow_serving/model_servers/BUILD``), at the versions pinned by each serving
tag. ``resources/serving/tf_serving_ops.json`` holds that registry (op → attr names) for the
*minimum* tag that runs our graphs, with its provenance; docs/serving.md explains how it was
derived. Attrs matter as much as ops: a NodeDef that sets an attr the server's op does not
declare fails to load (TF 2.20 SavedModels set ``VarHandleOp.debug_name``, unknown before
TensorFlow 2.15).
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources

import tensorflow as tf

SIGNATURE = "serving_default"
METADATA_FILE = "electra_tf.json"  # in assets.extra/: task, labels, columns, versions
WARMUP_FILE = "tf_serving_warmup_requests"  # in assets.extra/: read by TF Serving on load


def _versions(export_dir: str) -> list[int]:
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(d) for d in os.listdir(export_dir) if re.fullmatch(r"\d+", d))


def next_version(export_dir: str) -> int:
    """1 + the largest integer-named subdirectory (1 when there is none)."""
    return max(_versions(export_dir), default=0) + 1


def version_dir(export_dir: str, version=None) -> str:
    """``export_dir/<version>`` (the latest by default), checked to hold a SavedModel.

    ``export_dir`` may also be a version folder itself.
    """
    if version is None and os.path.exists(os.path.join(export_dir, "saved_model.pb")):
        return export_dir
    if version is None:
        version = next_version(export_dir) - 1
        if version < 1:
            raise FileNotFoundError(f"{export_dir}: no SavedModel version (expected "
                                    f"{export_dir}/<integer version>/saved_model.pb, written "
                                    "by electra_tf.export)")
    path = os.path.join(export_dir, str(version))
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{path}: no saved_model.pb (versions present: "
                                f"{_versions(export_dir) or 'none'})")
    return path


def export_metadata(version_path: str) -> dict:
    """An export's ``assets.extra/electra_tf.json`` (labels, columns...), or {} if absent."""
    path = os.path.join(version_path, "assets.extra", METADATA_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def allowlist_path() -> str:
    """Path of the packaged allowlist JSON."""
    return str(resources.files("electra_tf") / "resources" / "serving" / "tf_serving_ops.json")


def load_allowlist() -> dict:
    """``{"minimum_tensorflow_serving": tag, "provenance": {...}, "ops": {op: [attrs]}}``."""
    with open(allowlist_path(), encoding="utf-8") as f:
        return json.load(f)


def saved_model_ops(saved_model_dir: str) -> dict[str, set[str]]:
    """Every op type in a SavedModel (graph and function library) with the attrs it sets.

    Calls of library functions (node ops named after a function) and internal attrs (``_…``)
    are left out: only registered ops must exist in the serving binary.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops: dict[str, set[str]] = {}
    for meta_graph in proto.meta_graphs:
        library = meta_graph.graph_def.library
        functions = {fn.signature.name for fn in library.function}
        nodes = list(meta_graph.graph_def.node)
        nodes += [node for fn in library.function for node in fn.node_def]
        for node in nodes:
            if node.op not in functions:
                ops.setdefault(node.op, set()).update(
                    name for name in node.attr if not name.startswith("_"))
    return ops


def ops_outside_allowlist(ops: dict[str, set[str]], allowlist: dict) -> list[str]:
    """``Op`` or ``Op.attr`` entries that the allowlist does not hold, sorted."""
    allowed = allowlist["ops"]
    outside = []
    for op, attrs in sorted(ops.items()):
        if op not in allowed:
            outside.append(op)
        else:
            outside += [f"{op}.{a}" for a in sorted(attrs - set(allowed[op]))]
    return outside
