"""Raw text, JSON Lines or a TFDS dataset → sharded pre-training TFRecords (Apache Beam).

Usage::

    python -m pipelines.build_pretraining_data --input 'corpus/*.txt.gz' --output_dir DIR \\
        [--vocab FILE] [--max_seq_length 128] [--num_shards N] [--validation_fraction 0.01] \\
        [--seed 0] [--format electra_tf|original] [--compression none|gzip] [--overwrite] \\
        [any Beam pipeline option: --runner=DataflowRunner --project P --region R \\
         --temp_location gs://… --setup_file ./setup.py | --runner=FlinkRunner … |
         --direct_num_workers=2 --direct_running_mode=multi_processing]

Writes ``DIR/{train,validation}-XXXXX-of-YYYYY.tfrecord[.gz]``, ``DIR/metadata.json`` and, last,
``DIR/COMPLETED`` (``docs/architecture.md``; ``docs/preprocessing.md`` for the guarantees).
Everything that can be checked before any work starts is: the input matches files, the vocabulary
loads, the output directory is writable and not already complete (unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from electra_tf.tokenizer import Tokenizer, TokenizerError
from electra_tf.training.records import FORMATS
from pipelines import reading
from pipelines.inputs import (PipelineError, ReadInputs, add_input_arguments, input_options,
                              resolve_inputs)
from pipelines.options import BuildOptions, InputOptions
from pipelines.packing import MIN_SEQ_LENGTH
from pipelines.records import shard_pattern
from pipelines.transforms import (SPLITS, ShardInfo, SumCounts, TokenizeAndPack, WriteShards,
                                  shards_for)

COMPRESSIONS = {"none": "", "gzip": "GZIP"}
logger = logging.getLogger(__name__)


def build_pretraining_data(options: BuildOptions, beam_args: Sequence[str] = ()) -> dict:
    """Runs the pipeline to completion and returns the ``metadata.json`` it wrote; logs a
    warning for each split left without an example.

    Args:
      options: what to build.
      beam_args: Beam pipeline options (runner, workers, cloud project, ...).

    Raises:
      PipelineError: before any work, for a bad option, an input glob without files, an
        unreadable vocabulary, or an output directory that is not writable or already
        complete without ``overwrite``.
    """
    _check_options(options)
    work_items = resolve_inputs(options.input)
    try:
        tokenizer = Tokenizer(options.vocab or None, lower_case=options.lower_case)
    except (TokenizerError, OSError) as e:
        raise PipelineError(f"--vocab {options.vocab or '(packaged)'}: {e}") from None
    _prepare_output_dir(options.output_dir, options.overwrite)
    splits = SPLITS if options.validation_fraction > 0 else SPLITS[:1]
    static = {
        "format": options.format,
        "seq_length": options.max_seq_length,
        "compression": options.compression,
        "tokenizer": tokenizer.settings(),
        "options": dataclasses.asdict(options),
    }
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        chunks, read_counts = p | "Read" >> ReadInputs(options.input, work_items)
        batches, pack_counts = (chunks | "TokenizeAndPack"
                                >> TokenizeAndPack(options, static["tokenizer"]))
        totals = (read_counts, pack_counts) | "SumCounts" >> SumCounts()
        num_shards = totals | "NumShards" >> beam.Map(_num_shards, splits, options.num_shards)
        written = batches | "WriteShards" >> WriteShards(options.output_dir,
                                                          options.compression, num_shards)
        _ = (p | "Once" >> beam.Create([None])
             | "Finalize" >> beam.Map(_finalize, options.output_dir, static,
                                      beam.pvalue.AsSingleton(totals),
                                      beam.pvalue.AsList(written)))
    with FileSystems.open(os.path.join(options.output_dir, "metadata.json")) as f:
        result = json.loads(f.read().decode("utf-8"))
    for split, info in result["splits"].items():
        if not info["num_examples"]:
            # Its shards still exist (a reader finds every shard the metadata names), but
            # electra_tf.pretrain refuses a split without a record.
            logger.warning("the %s split of %s is empty (%d shard(s), 0 examples): too little "
                           "text%s", split, options.output_dir, info["num_shards"],
                           f" for --validation_fraction={options.validation_fraction}"
                           if split == "validation" else "")
    return result


# ---------------------------------------------------------------------------------------------
# Checks before any work.

def _check_options(o: BuildOptions) -> None:
    problems = []
    if o.max_seq_length < MIN_SEQ_LENGTH:
        problems.append(f"--max_seq_length={o.max_seq_length} must be >= {MIN_SEQ_LENGTH}")
    if o.num_shards < 0:
        problems.append(f"--num_shards={o.num_shards} must be >= 0 (0: automatic)")
    if not 0 <= o.validation_fraction < 1:
        problems.append(f"--validation_fraction={o.validation_fraction} must be in [0, 1)")
    if not 0 <= o.max_unk_fraction <= 1:
        problems.append(f"--max_unk_fraction={o.max_unk_fraction} must be in [0, 1]")
    if o.format not in FORMATS:
        problems.append(f"--format={o.format!r} must be one of {', '.join(FORMATS)}")
    if o.compression not in COMPRESSIONS.values():
        problems.append(f"compression={o.compression!r} must be '' or 'GZIP'")
    if problems:
        raise PipelineError("; ".join(problems))


def _prepare_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuses a completed directory (unless ``overwrite``), removes our stale outputs, and
    checks that the directory is writable."""
    completed = os.path.join(output_dir, "COMPLETED")
    try:
        if FileSystems.exists(completed) and not overwrite:
            raise PipelineError(f"--output_dir {output_dir} already holds completed data "
                                "(COMPLETED exists); pass --overwrite to replace it")
        if not FileSystems.exists(output_dir):
            FileSystems.mkdirs(output_dir)
        # COMPLETED goes first: a reader must never see it next to half-deleted shards.
        stale = [completed, os.path.join(output_dir, "metadata.json")]
        for split in SPLITS:
            pattern = os.path.join(output_dir, f"{split}-*-of-*.tfrecord*")
            stale += [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        stale = [path for path in stale if FileSystems.exists(path)]
        if stale:
            logger.info("removing %d outputs of an earlier run in %s", len(stale), output_dir)
            FileSystems.delete(stale)
        probe = os.path.join(output_dir, ".write_test")
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except PipelineError:
        raise
    except Exception as e:  # noqa: BLE001 - permission, quota, bad bucket: say where
        raise PipelineError(f"--output_dir {output_dir} is not writable: "
                            f"{type(e).__name__}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Inside the pipeline: shard counts and the final metadata.

def _num_shards(totals: reading.Counts, splits: Sequence[str], train_shards: int) -> dict:
    """``{split: shard count}``: ``--num_shards`` for train if given, else by size."""
    return {split: (train_shards if split == "train" and train_shards else
                    shards_for(totals.get(f"record_bytes.{split}", 0)))
            for split in splits}


def metadata(static: dict, totals: reading.Counts, written: Sequence[ShardInfo]) -> dict:
    """The ``metadata.json`` object (``docs/architecture.md``) from the run's counts."""
    splits = {}
    for info in sorted(written, key=lambda i: (i.split, i.index)):
        split = splits.setdefault(info.split, {
            "num_examples": 0, "num_shards": info.num_shards,
            "file_pattern": shard_pattern(info.split, info.num_shards, static["compression"]),
            "record_bytes": 0})
        split["num_examples"] += info.examples
        split["record_bytes"] += info.record_bytes
    examples = sum(s["num_examples"] for s in splits.values())
    written_tokens = totals.get("tokens_written", 0)
    counts = {
        "files": totals.get("files", 0),
        "documents": totals.get("documents", 0),
        "lines": totals.get("lines", 0),
        "tokens_in": totals.get("tokens_in", 0),
        "tokens_written": written_tokens,
        "examples": examples,
        "padding_fraction": (totals.get("padding_positions", 0)
                             / max(1, examples * static["seq_length"])),
        "unk_rate": totals.get("unk_tokens_written", 0) / max(1, written_tokens),
        "skipped": {r: totals.get(f"skipped.{r}", 0) for r in reading.SKIPPED},
        "repaired": {r: totals.get(f"repaired.{r}", 0) for r in reading.REPAIRED},
    }
    return {**static, "splits": splits, "counts": counts}


def _finalize(_, output_dir: str, static: dict, totals: reading.Counts,
              written: list[ShardInfo]) -> None:
    """Writes ``metadata.json``, then ``COMPLETED``: runs after every shard is written."""
    data = json.dumps(metadata(static, totals, written), indent=2, sort_keys=True) + "\n"
    with FileSystems.create(os.path.join(output_dir, "metadata.json")) as f:
        f.write(data.encode("utf-8"))
    with FileSystems.create(os.path.join(output_dir, "COMPLETED")) as f:
        f.write(b"")


# ---------------------------------------------------------------------------------------------
# Command line.

def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[BuildOptions, list[str]]:
    """``(options, Beam arguments)`` from the command line; unknown flags go to Beam."""
    d = BuildOptions(output_dir="", input=InputOptions())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Any other flag is a Beam pipeline option (--runner, --direct_num_workers, ...).")
    add_input_arguments(parser)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--vocab", default="", help="vocabulary file (default: packaged BERT)")
    parser.add_argument("--lower_case", action=argparse.BooleanOptionalAction,
                        default=d.lower_case)
    parser.add_argument("--max_seq_length", type=int, default=d.max_seq_length)
    parser.add_argument("--num_shards", type=int, default=d.num_shards,
                        help="train shards (default: shards of at most 256 MB)")
    parser.add_argument("--validation_fraction", type=float, default=d.validation_fraction)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--format", choices=FORMATS, default=d.format)
    parser.add_argument("--compression", choices=sorted(COMPRESSIONS), default="none")
    parser.add_argument("--max_unk_fraction", type=float, default=d.max_unk_fraction)
    parser.add_argument("--overwrite", action="store_true")
    args, beam_args = parser.parse_known_args(argv)
    options = BuildOptions(
        output_dir=args.output_dir, input=input_options(args), vocab=args.vocab,
        lower_case=args.lower_case, max_seq_length=args.max_seq_length,
        num_shards=args.num_shards, validation_fraction=args.validation_fraction,
        seed=args.seed, format=args.format, compression=COMPRESSIONS[args.compression],
        max_unk_fraction=args.max_unk_fraction, overwrite=args.overwrite)
    return options, beam_args


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options, beam_args = parse_args(argv)
    try:
        meta = build_pretraining_data(options, beam_args)
    except PipelineError as e:
        raise SystemExit(f"error: {e}") from None
    c = meta["counts"]
    print(f"wrote {c['examples']} examples ({c['tokens_written']} of {c['tokens_in']} tokens, "
          f"padding {100 * c['padding_fraction']:.1f}%, [UNK] {100 * c['unk_rate']:.3f}%) to "
          f"{options.output_dir}: " + ", ".join(
              f"{s} {v['num_examples']} in {v['num_shards']} shards"
              for s, v in meta["splits"].items()))
    skipped = {k: v for k, v in {**c["skipped"], **c["repaired"]}.items() if v}
    if skipped:
        print("skipped or repaired: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))


if __name__ == "__main__":
    main()
