"""Batch prediction with an exported classifier: from the SavedModel, or from TF Serving.

:class:`LocalModel` runs an export in this process with the interface of the TF Serving clients
(:mod:`electra_tf.serving.client`); :func:`predict_file` predicts every row of a TSV/CSV/JSONL
file with any of them (``python -m electra_tf.predict`` describes the input and output), and
:func:`predict_texts` a list of texts.
"""
from __future__ import annotations

import csv
import json
from typing import Optional

import numpy as np

from electra_tf.serving.client import ServingError, check_texts
from electra_tf.serving.layout import export_metadata, version_dir


class LocalModel:
    """An exported SavedModel in this process, with the clients' interface.

    Args:
      export_dir: ``exports/NAME`` (or one version folder of it).
      version: version to load; default the latest.
    """

    def __init__(self, export_dir: str, version: Optional[int] = None):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

        self.path = version_dir(export_dir, version)
        self._tf = tf
        self._loaded = tf.saved_model.load(self.path)
        self._fn = self._loaded.signatures["serving_default"]
        self.metadata = export_metadata(self.path)

    def signature(self) -> dict:
        return {"inputs": sorted(self._fn.structured_input_signature[1]),
                "outputs": sorted(self._fn.structured_outputs)}

    def predict(self, inputs: dict[str, list[str]]) -> dict[str, np.ndarray]:
        check_texts(inputs)
        wanted = self.signature()["inputs"]
        if sorted(inputs) != wanted:
            raise ServingError(f"{self.path} takes inputs {wanted}, the request has "
                               f"{sorted(inputs)}")
        outputs = self._fn(**{k: self._tf.constant(v, self._tf.string)
                              for k, v in inputs.items()})
        result = {}
        for name, tensor in outputs.items():
            array = tensor.numpy()
            if array.dtype == object:
                array = np.asarray([v.decode("utf-8") for v in array.reshape(-1)])
            result[name] = array
        return result


def output_rows(outputs: dict[str, np.ndarray], labels: list[str]) -> list[dict]:
    """Per example: ``label`` and ``probabilities`` ({label: p}), or ``score`` (regression)."""
    if "score" in outputs:
        return [{"score": float(s)} for s in outputs["score"]]
    names = labels or [str(i) for i in range(outputs["probabilities"].shape[-1])]
    return [{"label": str(label), "probabilities": dict(zip(names, map(float, probs)))}
            for label, probs in zip(outputs["label"], outputs["probabilities"])]


def predict_texts(export_dir: str, texts: list[str], texts_b: Optional[list[str]] = None,
                  version: Optional[int] = None) -> list[dict]:
    """Loads an export and predicts ``texts`` (a list): one :func:`output_rows` dict per text."""
    inputs = {"text": texts}
    if texts_b is not None:
        inputs["text_b"] = texts_b
    check_texts(inputs)
    model = LocalModel(export_dir, version)
    return output_rows(model.predict(inputs), model.metadata.get("labels", []))


def predict_file(model, input_path: str, output, text_column: str,
                 text_b_column: Optional[str], labels: list[str], batch_size: int = 64,
                 output_format: str = "jsonl") -> tuple[int, int]:
    """Predicts every row of ``input_path`` with ``model`` and writes them to ``output``.

    The file is read twice: first every row is checked, so that a bad row refuses the file
    before anything is written, then rows are predicted in batches. Each input row gives one
    output row, in order; a blank line gives ``{"skipped": "blank line N"}``.

    Args:
      model: :class:`LocalModel`, ``RestClient`` or ``GrpcClient``.
      input_path: TSV/CSV/JSONL with the text column(s).
      output: a text stream.
      text_column, text_b_column: input columns (``text_b_column`` for pair models).
      labels: label names for the probability columns (empty: numbered).
      batch_size: rows per request.
      output_format: ``jsonl`` or ``tsv``.

    Returns:
      ``(rows predicted, blank lines marked)``.
    """
    blank = sum(inputs is None for _, _, inputs in input_rows(input_path, text_column,
                                                                  text_b_column))
    sink = _OutputWriter(output, output_format, blank > 0)
    predicted = 0
    batch: list[tuple[int, dict, Optional[dict]]] = []

    def flush():
        nonlocal predicted
        rows = [(record, inputs) for _, record, inputs in batch if inputs is not None]
        results = iter(output_rows(model.predict(
            {k: [inputs[k] for _, inputs in rows] for k in rows[0][1]}), labels) if rows else [])
        for line, record, inputs in batch:
            sink.write({"skipped": f"blank line {line}"} if inputs is None
                       else {**record, **next(results)})
        predicted += len(rows)
        batch.clear()

    for row in input_rows(input_path, text_column, text_b_column):
        batch.append(row)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    sink.close()
    return predicted, blank


def input_rows(path: str, text_column: str, text_b_column: Optional[str]):
    """Yields ``(line, record, model inputs)`` per row; inputs are None for a blank line."""
    from electra_tf.finetuning.files import check_columns, read_records, text_value

    columns, rows = read_records(path)
    check_columns(path, columns, [text_column] + ([text_b_column] if text_b_column else []))
    for line, record in rows:
        if record is None:
            yield line, {}, None
            continue
        inputs = {"text": text_value(path, line, record, text_column)}
        if text_b_column:
            inputs["text_b"] = text_value(path, line, record, text_b_column)
        yield line, record, inputs


class _OutputWriter:
    """Writes output rows as JSONL, or as TSV (probabilities flattened to ``p_LABEL``).

    A TSV header needs the first prediction's columns, so rows for blank lines before it
    wait; ``skipped`` is a column only when the input has blank lines.
    """

    def __init__(self, stream, output_format: str, has_blank: bool):
        self.stream, self.format, self.has_blank = stream, output_format, has_blank
        self.tsv = None
        self.waiting: list[dict] = []

    def write(self, row: dict) -> None:
        if self.format == "jsonl":
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        flat = {k: v for k, v in row.items() if k != "probabilities"}
        flat.update({f"p_{k}": f"{v:.6f}" for k, v in row.get("probabilities", {}).items()})
        if self.tsv is None and "skipped" in flat:
            self.waiting.append(flat)
        elif self.tsv is None:
            self._start(list(flat) + ["skipped"] * self.has_blank)
            self.tsv.writerow(flat)
        else:
            self.tsv.writerow(flat)

    def close(self) -> None:
        if self.tsv is None and self.waiting:  # blank lines only
            self._start(["skipped"])

    def _start(self, fieldnames: list[str]) -> None:
        self.tsv = csv.DictWriter(self.stream, fieldnames=fieldnames, delimiter="\t",
                                  lineterminator="\n", extrasaction="ignore")
        self.tsv.writeheader()
        self.tsv.writerows(self.waiting)
