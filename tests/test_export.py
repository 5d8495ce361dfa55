"""Export: raw-text SavedModel in TF Serving's layout, loadable without electra_tf."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from electra_tf import export as export_cli
from electra_tf.finetuning.config import build_finetuning_config
from electra_tf.finetuning import classifier
from electra_tf.finetuning.tasks import TaskInfo
from electra_tf.serving import export, layout
from electra_tf.tokenizer import tokenizer_from_config

TEXTS = ["It is a truth universally acknowledged.", "",
         "Call me Ishmael. " * 60,  # far longer than seq_length: truncated in the graph
         "Ünïcödé, 日本語 and a tab\there."]


def _make_run(directory, task: TaskInfo, seed: int):
    """A run directory holding a (randomly initialised) debug_tiny classifier."""
    config = build_finetuning_config("debug_tiny", None)
    tokenizer = tokenizer_from_config(config.data)
    model = classifier.build_classifier(config, task.num_outputs, seed=seed)
    classifier.save_classifier(str(directory), config, tokenizer, task, model)
    return config, tokenizer, model


def _in_memory(config, tokenizer, model, texts, texts_b=None) -> np.ndarray:
    inputs = tokenizer.encode(tf.constant(texts), None if texts_b is None else
                              tf.constant(texts_b), seq_length=config.finetune.seq_length)
    return model(inputs, training=False).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    task = TaskInfo("classification", ("austen", "moby_dick", "sötu"), "text", None, "label")
    config, tokenizer, model = _make_run(root / "run", task, seed=3)
    path = export.export_classifier(str(root / "run"), str(root / "exports" / "books"),
                                    echo=lambda line: None)
    return {"path": path, "config": config, "tokenizer": tokenizer, "model": model,
            "root": root}


def test_layout_assets_and_metadata(exported, background):  # starts the background checks
    path = exported["path"]
    assert path.endswith(os.path.join("exports", "books", "1"))
    assert sorted(os.listdir(os.path.join(path, "assets"))) == ["labels.txt", "vocab.txt"]
    with open(os.path.join(path, "assets", "labels.txt"), encoding="utf-8") as f:
        assert f.read() == "austen\nmoby_dick\nsötu\n"
    meta = layout.export_metadata(path)
    assert meta["labels"] == ["austen", "moby_dick", "sötu"] and meta["inputs"] == ["text"]
    assert meta["ops_outside_allowlist"] == [] and meta["seq_length"] == 32
    exports = os.path.dirname(path)
    assert os.listdir(exports) == ["1"]  # no staging folder left behind
    assert layout.next_version(exports) == 2 and layout.version_dir(exports) == path
    with pytest.raises(FileExistsError, match="already exists; versions are immutable"):
        export.export_classifier(str(exported["root"] / "run"), exports, version=1)


@pytest.fixture(scope="module")
def background(exported):
    """Starts the two slow out-of-process checks at once; the tests at the end collect them.

    A fresh interpreter loads the export with only tensorflow and tensorflow_text (electra_tf
    is made unimportable there), and ``saved_model_cli show`` prints the signature.
    """
    script = (
        "import json, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'electra_tf':\n"
        "            raise ImportError('the SavedModel needs electra_tf')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tensorflow as tf\n"
        "import tensorflow_text  # registers the tokenizer's ops\n"
        "fn = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = fn(text=tf.constant(json.loads(sys.argv[2])))\n"
        "refused = []\n"
        "for bad in (tf.constant('a'), tf.constant([['a', 'b']])):\n"
        "    try:\n"
        "        fn(text=bad)\n"
        "    except tf.errors.InvalidArgumentError as e:\n"
        "        refused.append(e.message)\n"
        "print(json.dumps({'probabilities': out['probabilities'].numpy().tolist(),\n"
        "                  'logits': out['logits'].numpy().tolist(),\n"
        "                  'label': [l.decode() for l in out['label'].numpy()],\n"
        "                  'refused': refused,\n"
        "                  'imported': sorted(m for m in sys.modules\n"
        "                                     if m.split('.')[0] == 'electra_tf')}))\n")
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    processes = {
        "fresh": subprocess.Popen([sys.executable, "-c", script, exported["path"],
                                   json.dumps(TEXTS)], cwd="/", text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        "cli": subprocess.Popen([cli, "show", "--dir", exported["path"], "--tag_set", "serve",
                                 "--signature_def", "serving_default"], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    }
    yield processes
    for process in processes.values():
        process.kill()
        process.communicate()


def _finish(process) -> str:
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-2000:]
    return stdout


def test_warmup_requests_are_prediction_logs(exported):
    path = os.path.join(exported["path"], "assets.extra", layout.WARMUP_FILE)
    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    texts = list(export.DEFAULT_WARMUP_TEXTS)
    assert len(logs) == len(texts) + 1
    request = logs[-1].predict_log.request
    assert request.model_spec.name == "books"
    assert request.model_spec.signature_name == "serving_default"
    assert [t.decode() for t in tf.make_ndarray(request.inputs["text"])] == texts
    assert [tf.make_ndarray(l.predict_log.request.inputs["text"]).shape for l in logs[:-1]] == [
        (1,)] * len(texts)


def test_graph_ops_stay_within_the_tf_serving_allowlist(exported):
    allowlist = layout.load_allowlist()
    assert allowlist["minimum_tensorflow_serving"] == "2.15.1"
    ops = layout.saved_model_ops(exported["path"])
    # Not vacuous: the tokenizer's TF Text ops and the model's ops are in the walked set.
    assert {"NormalizeUTF8", "WordpieceTokenizeWithOffsets", "StringSplitV2",
            "MatMul", "Softmax", "LookupTableFindV2"} <= set(ops)
    assert layout.ops_outside_allowlist(ops, allowlist) == []
    # Attrs count: TF <= 2.14 had VarHandleOp without debug_name, which TF 2.20 sets.
    assert "debug_name" in ops["VarHandleOp"]
    assert layout.ops_outside_allowlist(
        {"VarHandleOp": {"dtype", "debug_name"}, "MadeUpOp": set()},
        {"ops": {"VarHandleOp": ["dtype", "shape"]}}) == ["MadeUpOp", "VarHandleOp.debug_name"]


def test_pair_regression_export(tmp_path):
    task = TaskInfo("regression", (), "sentence1", "sentence2", "score")
    config, tokenizer, model = _make_run(tmp_path / "run", task, seed=5)
    path = export.export_classifier(str(tmp_path / "run"), str(tmp_path / "exports" / "sts"),
                                    warmup_texts=["a"], warmup_texts_b=["b"],
                                    echo=lambda line: None)
    fn = tf.saved_model.load(path).signatures["serving_default"]
    assert sorted(fn.structured_input_signature[1]) == ["text", "text_b"]
    assert list(fn.structured_outputs) == ["score"]
    a, b = ["a cat sat on the mat", "", "long " * 100], ["a cat", "x", "longer " * 100]
    score = fn(text=tf.constant(a), text_b=tf.constant(b))["score"].numpy()
    np.testing.assert_allclose(score, _in_memory(config, tokenizer, model, a, b)[:, 0],
                               atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"input text_b must be a vector of strings, shape \[batch\]"):
        fn(text=tf.constant(["a"]), text_b=tf.constant("b"))
    assert layout.export_metadata(path)["inputs"] == ["text", "text_b"]


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "multi" / "seed_1").mkdir(parents=True)
    assert export_cli.main(["--run", str(tmp_path / "multi"), "--export_dir",
                        str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds the runs seed_1 — pass one of them" in err
    assert not os.path.exists(tmp_path / "e" / "1")


@pytest.fixture(scope="module")
def fresh(background) -> dict:
    """What the fresh process printed (see ``background``)."""
    return json.loads(_finish(background["fresh"]).strip().splitlines()[-1])


def test_fresh_process_without_electra_tf_matches_in_memory_model(exported, fresh):
    served = fresh
    assert served["imported"] == []
    logits = _in_memory(exported["config"], exported["tokenizer"], exported["model"], TEXTS)
    np.testing.assert_allclose(served["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(served["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    labels = ["austen", "moby_dick", "sötu"]
    assert served["label"] == [labels[i] for i in np.argmax(logits, axis=-1)]


def test_fresh_process_refuses_scalar_and_2d_requests_naming_the_input(fresh):
    # The signature's [None] is not enforced at run time (nor by TF Serving): the graph checks
    # the rank itself, where tracing and Grappler cannot fold the check away.
    assert len(fresh["refused"]) == 2
    for message, shape in zip(fresh["refused"], ("[]", "[1 2]")):
        assert ("assertion failed: [input text must be a vector of strings, shape [batch]; "
                f"got shape] {shape}") in message, message


def test_saved_model_cli_lists_the_signature(background):
    shown = _finish(background["cli"])
    assert "inputs['text'] tensor_info:" in shown and "dtype: DT_STRING" in shown
    for output in ("probabilities", "label", "logits"):
        assert f"outputs['{output}'] tensor_info:" in shown, shown
    assert "shape: (-1, 3)" in shown and "Method name is: tensorflow/serving/predict" in shown
