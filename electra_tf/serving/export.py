"""Export a fine-tuned classifier as a SavedModel that takes raw text (TF Serving layout).

``python -m electra_tf.export --run ft/mytask --export_dir exports/mytask`` writes
``exports/mytask/<version>/`` (version = next free integer) containing::

    saved_model.pb, variables/      the graph and weights
    assets/vocab.txt, labels.txt    the tokenizer's vocabulary and the label names
    assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays on load
    assets.extra/electra_tf.json    task, columns, sequence length, versions (for predict)

The ``serving_default`` signature takes ``text`` (and ``text_b`` for pair tasks), string
[batch], tokenizes inside the graph (``electra_tf.tokenizer``: the reference normalization +
tensorflow-text WordPiece; longer inputs are truncated to ``finetune.seq_length`` tokens,
pairs from the end of the longer text first) and returns ``probabilities`` float32
[batch, labels], ``label`` string [batch] and ``logits`` float32 [batch, labels] — or ``score``
float32 [batch] for regression. Loading needs only ``import tensorflow_text`` (which registers
its ops), no electra_tf code.

The version is written under a temporary name and renamed when complete, so a TF Serving that
watches the directory never loads half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Optional

import tensorflow as tf

from electra_tf.finetuning.classifier import ElectraClassifier
from electra_tf.finetuning.tasks import TaskInfo
from electra_tf.serving.layout import (METADATA_FILE, SIGNATURE, WARMUP_FILE, load_allowlist,
                                       next_version, ops_outside_allowlist, saved_model_ops)
from electra_tf.tokenizer import Tokenizer

# Texts replayed by TF Serving at load time when no dev texts are given (one is empty and one
# is longer than any sequence length, so both paths are warm).
DEFAULT_WARMUP_TEXTS = (
    "It is a truth universally acknowledged.",
    "Call me Ishmael.",
    "",
    "The state of the union is strong. " * 40,
)


class ClassifierServingModule(tf.Module):
    """Tokenizer + classifier + label table behind one raw-text tf.function.

    Args:
      model: a built :class:`~electra_tf.finetuning.classifier.ElectraClassifier`.
      tokenizer: the tokenizer the model was fine-tuned with (its vocabulary becomes an asset).
      task: labels and whether the task is a pair task.
      seq_length: tokens per example, ``[CLS]``/``[SEP]`` included.
      labels_path: a file with one label per line (id = line number), for classification.

    :meth:`serving_signature` takes string [batch] tensors ``text`` (and ``text_b``); see the
    module docstring for its outputs.
    """

    def __init__(self, model: ElectraClassifier, tokenizer: Tokenizer, task: TaskInfo,
                 seq_length: int, labels_path: Optional[str] = None):
        super().__init__(name="electra_classifier_serving")
        self.model = model
        self.tokenizer = tokenizer
        self.seq_length = int(seq_length)
        self.classification = task.task_type == "classification"
        if self.classification:
            self.label_table = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(
                    labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                    tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
                default_value="")
        self.is_pair = task.is_pair

    def serving_signature(self):
        """The concrete ``serving_default`` function, traced once.

        Not kept as an attribute: ``tf.saved_model.save`` would trace an attribute's function
        a second time while listing the module's children.
        """
        spec = [tf.TensorSpec([None], tf.string, name="text")]
        if self.is_pair:
            spec.append(tf.TensorSpec([None], tf.string, name="text_b"))

            def serve(text, text_b):
                return self._predict(text, text_b)
        else:
            def serve(text):
                return self._predict(text)
        # No autograph: nothing here branches on tensors, and converting costs seconds.
        return tf.function(serve, input_signature=spec, autograph=False).get_concrete_function()

    def _predict(self, text, text_b=None) -> dict[str, tf.Tensor]:
        text = _checked_batch("text", text)
        text_b = None if text_b is None else _checked_batch("text_b", text_b)
        inputs = self.tokenizer.encode(text, text_b, seq_length=self.seq_length)
        logits = self.model(inputs, training=False)
        if not self.classification:
            return {"score": logits[:, 0]}
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "label": self.label_table.lookup(tf.argmax(logits, axis=-1)),
            "logits": logits,
        }


def _checked_batch(name: str, text: tf.Tensor) -> tf.Tensor:
    """``text``, after a run-time check that it is a vector (string [batch]).

    The input signature's shape [None] is not enforced when the graph runs: neither
    ``loaded.signatures["serving_default"]`` nor TF Serving compares a request's shape with it,
    and a scalar or 2-D request otherwise fails deep in the tokenizer ("Graph execution
    error ... StringSplitV2: input must be a vector"). Tracing and Grappler both fold
    ``Rank`` (or ``Size`` of the shape) of a [None] tensor to 1 and drop the check, so the
    dimensions are counted with ``Where``, whose output length is known only at run time.
    """
    dims = tf.shape(text)
    rank = tf.shape(tf.where(dims >= 0), out_type=tf.int32)[0]
    check = tf.debugging.Assert(
        tf.equal(rank, 1),
        [f"input {name} must be a vector of strings, shape [batch]; got shape",
         tf.shape(text)], name=f"check_{name}_shape")
    with tf.control_dependencies([check]):
        return tf.identity(text)


# ---------------------------------------------------------------------------------------------
# Writing a version.

def write_warmup_requests(path: str, model_name: str, texts: list[str],
                          texts_b: Optional[list[str]] = None) -> int:
    """Writes TF Serving warm-up records (``PredictionLog`` protos) for ``texts``.

    One single-example request per text and one request with all of them, so both the batch-1
    and the batched code paths are compiled before the first real request.

    Returns:
      The number of records written.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    batches = [slice(i, i + 1) for i in range(len(texts))] + [slice(0, len(texts))]
    with tf.io.TFRecordWriter(path) as writer:
        for rows in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE))
            request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts[rows], tf.string))
            if texts_b is not None:
                request.inputs["text_b"].CopyFrom(tf.make_tensor_proto(texts_b[rows], tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(batches)


def export_classifier(run_dir: str, export_dir: str, version: Optional[int] = None,
                      warmup_texts: Optional[list[str]] = None,
                      warmup_texts_b: Optional[list[str]] = None,
                      echo: Callable[[str], None] = print) -> str:
    """Exports a fine-tuning run as ``export_dir/<version>/``; returns that path.

    Args:
      run_dir: a fine-tuning run directory (``classifier.weights.h5``, ``label_map.json``...).
      export_dir: the model's directory in TF Serving's layout; its base name is the model
        name used in the warm-up requests and the printed commands.
      version: integer version; default the next free one. An existing version is refused.
      warmup_texts, warmup_texts_b: a few real inputs for the warm-up file (default: built-in
        sentences; for pair tasks the same list serves as both texts).
      echo: receives the summary and the ``docker run`` / ``curl`` lines.
    """
    from electra_tf.finetuning.classifier import load_classifier

    version = next_version(export_dir) if version is None else int(version)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; versions are immutable (leave out "
                              "--version to write the next free one)")
    config, tokenizer, task, model = load_classifier(run_dir)
    model_name = os.path.basename(os.path.normpath(export_dir))
    os.makedirs(export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        metadata = _write_version(staging, config, tokenizer, task, model, model_name,
                                  warmup_texts, warmup_texts_b, run_dir)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    tag = metadata["minimum_tensorflow_serving"]
    outside = metadata["ops_outside_allowlist"]
    echo(f"exported {task.task_type} model '{model_name}' version {version} to {final}")
    if outside:
        echo(f"WARNING: the graph uses ops outside the TF Serving allowlist ({', '.join(outside)}"
             f"); tensorflow/serving:{tag} may not load it — see docs/serving.md")
    echo(serving_commands(export_dir, metadata))
    return final


def _write_version(staging: str, config, tokenizer: Tokenizer, task: TaskInfo,
                   model: ElectraClassifier, model_name: str, warmup_texts, warmup_texts_b,
                   run_dir: str) -> dict:
    """Writes the SavedModel, warm-up requests and metadata into ``staging``."""
    with tempfile.TemporaryDirectory() as scratch:
        labels_path = None
        if task.task_type == "classification":
            labels_path = os.path.join(scratch, "labels.txt")
            with open(labels_path, "w", encoding="utf-8") as f:
                f.write("".join(label + "\n" for label in task.labels))
        module = ClassifierServingModule(model, tokenizer, task, config.finetune.seq_length,
                                         labels_path)
        tf.saved_model.save(module, staging, signatures={SIGNATURE: module.serving_signature()})
    texts = list(warmup_texts or DEFAULT_WARMUP_TEXTS)
    texts_b = (list(warmup_texts_b or texts) if task.is_pair else None)
    extra = os.path.join(staging, "assets.extra")
    os.makedirs(extra)
    write_warmup_requests(os.path.join(extra, WARMUP_FILE), model_name, texts, texts_b)
    allowlist = load_allowlist()
    outside = ops_outside_allowlist(saved_model_ops(staging), allowlist)
    metadata = {
        "task_type": task.task_type, "labels": list(task.labels),
        "text_column": task.text_column, "text_b_column": task.text_b_column,
        "label_column": task.label_column, "seq_length": config.finetune.seq_length,
        "inputs": ["text", "text_b"] if task.is_pair else ["text"],
        "outputs": (["probabilities", "label", "logits"] if task.task_type == "classification"
                    else ["score"]),
        "run_dir": os.path.abspath(run_dir), "tensorflow": tf.__version__,
        "minimum_tensorflow_serving": allowlist["minimum_tensorflow_serving"],
        "ops_outside_allowlist": outside,
    }
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, ensure_ascii=False)
    return metadata


def serving_commands(export_dir: str, metadata: dict) -> str:
    """The ``docker run`` line for TF Serving and a ``curl`` REST request for this export."""
    name = os.path.basename(os.path.normpath(export_dir))
    instance = {"text": "Call me Ishmael."}
    if "text_b" in metadata["inputs"]:
        instance["text_b"] = "Some years ago, never mind how long precisely."
    body = json.dumps({"instances": [instance]})
    return (f"serve with TF Serving >= {metadata['minimum_tensorflow_serving']}:\n"
            f"  docker run --rm -p 8501:8501 -p 8500:8500 "
            f"-v {os.path.abspath(export_dir)}:/models/{name} -e MODEL_NAME={name} "
            f"tensorflow/serving:{metadata['minimum_tensorflow_serving']}\n"
            f"  curl -s -X POST http://localhost:8501/v1/models/{name}:predict "
            f"-d '{body}'")
