"""Batch prediction with an exported classifier: from the SavedModel, or from TF Serving.

Examples:
  python -m electra_tf.predict --model exports/mytask --input new.tsv --output predicted.jsonl
  python -m electra_tf.predict --server localhost:8501 --model_name mytask --input new.jsonl
  python -m electra_tf.predict --server grpc://localhost:8500 --model_name mytask \\
      --model exports/mytask --input new.tsv --output predicted.tsv

Input: TSV/CSV with a header row, or JSONL; ``--text_column`` (and ``--text_b_column`` for pair
models) default to the columns the model was fine-tuned on. Output (JSONL, or TSV when the
output file ends in ``.tsv``): every input column plus ``label`` and the probability of each
label (``score`` for regression). Empty texts are valid ([CLS] [SEP] only); texts longer than
the model's sequence length are truncated inside the model. Bad input (missing column, a
non-string value, an unreachable server) ends with a one-line error and exit status 2.
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
    """Loads an export and predicts ``texts``: one :func:`output_rows` dict per text."""
    model = LocalModel(export_dir, version)
    inputs = {"text": list(texts)}
    if texts_b is not None:
        inputs["text_b"] = list(texts_b)
    return output_rows(model.predict(inputs), model.metadata.get("labels", []))


def predict_file(model, input_path: str, output, text_column: str,
                 text_b_column: Optional[str], labels: list[str], batch_size: int = 64,
                 output_format: str = "jsonl") -> int:
    """Predicts every row of ``input_path`` with ``model`` and writes them to ``output``.

    Args:
      model: :class:`LocalModel`, ``RestClient`` or ``GrpcClient``.
      input_path: TSV/CSV/JSONL with the text column(s).
      output: a text stream.
      text_column, text_b_column: input columns (``text_b_column`` for pair models).
      labels: label names for the probability columns (empty: numbered).
      batch_size: rows per request.
      output_format: ``jsonl`` or ``tsv``.

    Returns:
      The number of rows predicted.
    """
    from electra_tf.tasks import check_columns, read_records, text_value

    columns, rows = read_records(input_path)
    check_columns(input_path, columns, [text_column] + ([text_b_column] if text_b_column
                                                         else []))
    writer = None
    count = 0
    batch: list[tuple[int, dict]] = []

    def flush():
        nonlocal writer, count
        inputs = {"text": [text_value(input_path, line, r, text_column) for line, r in batch]}
        if text_b_column:
            inputs["text_b"] = [text_value(input_path, line, r, text_b_column)
                                for line, r in batch]
        for (_, record), result in zip(batch, output_rows(model.predict(inputs), labels)):
            if output_format == "jsonl":
                output.write(json.dumps({**record, **result}, ensure_ascii=False) + "\n")
                continue
            flat = {**record, **{k: v for k, v in result.items() if k != "probabilities"}}
            flat.update({f"p_{k}": f"{v:.6f}" for k, v in result.get("probabilities", {}).items()})
            if writer is None:
                writer = csv.DictWriter(output, fieldnames=list(flat), delimiter="\t",
                                        lineterminator="\n", extrasaction="ignore")
                writer.writeheader()
            writer.writerow(flat)
        count += len(batch)
        batch.clear()

    for line, record in rows:
        batch.append((line, record))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return count


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
        count, destination = _run(args)
    except (ServingError, TaskDataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"predicted {count} rows → {destination}", file=sys.stderr)
    return 0


def _run(args) -> tuple[int, str]:
    from electra_tf.serving_client import connect
    from electra_tf.tasks import check_columns, read_records

    # The export's metadata (cheap to read) names the inputs and columns, so a bad input file
    # fails before a model is loaded.
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
    columns, _ = read_records(args.input)
    check_columns(args.input, columns, [text_column] + ([text_b_column] if pair else []))
    model = model or LocalModel(args.model, args.version)
    labels = metadata.get("labels", [])
    fmt = "tsv" if args.output and args.output.endswith(".tsv") else "jsonl"
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            count = predict_file(model, args.input, f, text_column, text_b_column, labels,
                                 args.batch_size, fmt)
        return count, args.output
    count = predict_file(model, args.input, sys.stdout, text_column, text_b_column, labels,
                         args.batch_size, fmt)
    return count, "stdout"


if __name__ == "__main__":
    sys.exit(main())
