"""Batch prediction with an exported classifier: from the SavedModel, or from TF Serving.

Examples:
  python -m electra_tf.predict --model exports/mytask --input new.tsv --output predicted.jsonl
  python -m electra_tf.predict --server localhost:8501 --model_name mytask --input new.jsonl
  python -m electra_tf.predict --server grpc://localhost:8500 --model_name mytask \\
      --model exports/mytask --input new.tsv --output predicted.tsv

Input: TSV/CSV with a header row, or JSONL, read as :mod:`electra_tf.finetuning.files` reads
fine-tuning files (TSV: one row per line, quotes are text); ``--text_column`` (and
``--text_b_column`` for pair models) default to the columns the model was fine-tuned on.
Output (JSONL, or TSV when the output file ends in ``.tsv``): one row per input row, in order:
every input column plus ``label`` and the probability of each label (``score`` for
regression); a blank input line gives a row with ``skipped`` set to ``blank line N`` and no
prediction. Empty texts are valid ([CLS] [SEP] only); texts longer than the model's sequence
length are truncated inside the model. Every row is checked before the first prediction, so bad
input (missing column, a row with the wrong number of fields, a non-string value, an
unreachable server) ends with a one-line error, exit status 2 and no output file.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from electra_tf.serving.client import ServingError
from electra_tf.serving.layout import export_metadata, version_dir
from electra_tf.serving.predict import LocalModel, input_rows, predict_file


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


def _written_in_place(path: str) -> bool:
    """A link (``/dev/stdout`` → ``/proc/self/fd/1``), a pipe or a device: renaming a finished
    file over it would replace the link or the device, so it is written directly."""
    return os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path))


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
    from electra_tf.finetuning.files import TaskDataError

    try:
        (count, blank), destination = _run(args)
    except (ServingError, TaskDataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    marked = f", marked {blank} blank line{'s' * (blank > 1)}" if blank else ""
    print(f"predicted {count} rows{marked} → {destination}", file=sys.stderr)
    return 0


def _run(args) -> tuple[tuple[int, int], str]:
    from electra_tf.serving.client import connect

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
    for _ in input_rows(args.input, text_column, text_b_column):
        pass
    model = model or LocalModel(args.model, args.version)
    labels = metadata.get("labels", [])
    fmt = "tsv" if args.output and args.output.endswith(".tsv") else "jsonl"
    if args.output and _written_in_place(args.output):
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
