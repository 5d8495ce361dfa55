"""Batch prediction with an exported classifier: from the SavedModel, or from TF Serving.

Examples:
  python -m electra_tf.predict --model exports/mytask --input new.tsv --output predicted.jsonl
  python -m electra_tf.predict --server localhost:8501 --model_name mytask --input new.jsonl
  python -m electra_tf.predict --server grpc://localhost:8500 --model_name mytask \\
      --model exports/mytask --input new.tsv --output predicted.tsv

Input: TSV/CSV with a header row, or JSONL, read as :mod:`electra_tf.tasks` reads fine-tuning
files (TSV: one row per line, quotes are text); ``--text_column`` (and ``--text_b_column`` for
pair models) default to the columns the model was fine-tuned on. Output (JSONL, or TSV when the
output file ends in ``.tsv``): one row per input row, in order: every input column plus
``label`` and the probability of each label (``score`` for regression); a blank input line
gives a row with ``skipped`` set to ``blank line N`` and no prediction. Empty texts are valid
([CLS] [SEP] only); texts longer than the model's sequence length are truncated inside the
model. Every row is checked before the first prediction, so bad input (missing column, a row
with the wrong number of fields, a non-string value, an unreachable server) ends with a
one-line error, exit status 2 and no output file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Optional

import numpy as np

from electra_tf.serving import export_metadata, version_dir
from electra_tf.serving_client import ServingError, check_texts

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
    blank = sum(inputs is None for _, _, inputs in _input_rows(input_path, text_column,
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

    for row in _input_rows(input_path, text_column, text_b_column):
        batch.append(row)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    sink.close()
    return predicted, blank


def _input_rows(path: str, text_column: str, text_b_column: Optional[str]):
    """Yields ``(line, record, model inputs)`` per row; inputs are None for a blank line."""
    from electra_tf.tasks import check_columns, read_records, text_value

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m electra_tf.predict",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="export directory (exports/NAME); with --server only "
                        "read for label names and column defaults")
    parser.add_argument("--version", type=int, help="model version (default: the latest)")
    parser.add_argument("--server", help="TF Serving address: host:8501 (REST), host:8500 or "
                        "grpc://host:port (gRPC)")
    parser.add_argument("--model_name", help="served model name (default: basename of --model)")
    parser.add_argument("--input", required=True, help="TSV/CSV/JSONL file with a header")
    parser.add_argument("--text_column", help="default: the model's training column or 'text'")
    parser.add_argument("--text_b_column", help="second text of pair models (default: the "
                        "model's training column)")
    parser.add_argument("--output", help="output file (.jsonl or .tsv); default JSONL on stdout")
    parser.add_argument("--batch_size", type=int, default=64, help="rows per request")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per server request")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model and not args.server:
        print("error: give --model EXPORT_DIR or --server HOST:PORT", file=sys.stderr)
        return 2
    if args.server and not (args.model_name or args.model):
        print("error: --server needs --model_name (or --model to take its name)",
              file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"error: --batch_size={args.batch_size} must be >= 1", file=sys.stderr)
        return 2
    from electra_tf.tasks import TaskDataError

    try:
        (count, blank), destination = _run(args)
    except (ServingError, TaskDataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    marked = f", marked {blank} blank line{'s' * (blank > 1)}" if blank else ""
    print(f"predicted {count} rows{marked} → {destination}", file=sys.stderr)
    return 0


def _run(args) -> tuple[tuple[int, int], str]:
    from electra_tf.serving_client import connect

    # The export's metadata (cheap to read) names the inputs and columns, so a bad input file
    # fails (every row is checked) before a model is loaded.
    metadata = export_metadata(version_dir(args.model, args.version)) if args.model else {}
    model = None
    if args.server:
        name = args.model_name or os.path.basename(os.path.normpath(args.model))
        model = connect(args.server, name, args.version, args.timeout)
        inputs = model.signature()["inputs"]
    else:
        inputs = metadata.get("inputs")
        if inputs is None:  # an export made elsewhere
            model = LocalModel(args.model, args.version)
            inputs = model.signature()["inputs"]
    pair = "text_b" in inputs
    if args.text_b_column and not pair:
        raise ServingError(f"--text_b_column {args.text_b_column}: the model takes one text")
    text_column = args.text_column or metadata.get("text_column") or "text"
    text_b_column = (args.text_b_column or metadata.get("text_b_column") or "text_b") if pair \
        else None
    for _ in _input_rows(args.input, text_column, text_b_column):
        pass
    model = model or LocalModel(args.model, args.version)
    labels = metadata.get("labels", [])
    fmt = "tsv" if args.output and args.output.endswith(".tsv") else "jsonl"
    if args.output and not os.path.isfile(args.output) and os.path.exists(args.output):
        # A device or pipe (/dev/stdout): written in place, it cannot be renamed into.
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            count = predict_file(model, args.input, f, text_column, text_b_column, labels,
                                 args.batch_size, fmt)
        return count, args.output
    if args.output:
        # Written aside and renamed when complete: a failure (server gone mid-file) leaves no
        # output that looks finished.
        partial = args.output + ".partial"
        try:
            with open(partial, "w", encoding="utf-8", newline="") as f:
                count = predict_file(model, args.input, f, text_column, text_b_column, labels,
                                     args.batch_size, fmt)
            os.replace(partial, args.output)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return count, args.output
    count = predict_file(model, args.input, sys.stdout, text_column, text_b_column, labels,
                         args.batch_size, fmt)
    return count, "stdout"


if __name__ == "__main__":
    sys.exit(main())
