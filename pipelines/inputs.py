"""The input side shared by both pipelines: check the inputs before any work, then read them.

Input is either file globs (plain text or JSON Lines, any Beam file system, any compression
Beam recognizes) or a prepared TFDS split, as :class:`~pipelines.options.InputOptions` says.
:func:`resolve_inputs` turns them into a list of work items (:class:`SourceFile` s or
:class:`TfdsShard` s) and fails early with a message naming the flag; :class:`ReadInputs` reads
those into ``TextChunk`` s with :class:`ReadTextFiles` or :class:`ReadTfds`, Beam wrappers of
the generators of ``pipelines/reading.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Iterator, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import reading
from pipelines.options import InputOptions
from pipelines.reading import Counts
from pipelines.transforms import COUNTS, report_counts

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
logger = logging.getLogger(__name__)


class PipelineError(ValueError):
    """The run cannot start: the message names the input, file or option and what is wrong."""


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """An input file: where it is, and its stable name (keys the randomness of its examples)."""

    path: str
    name: str


@dataclasses.dataclass(frozen=True)
class TfdsShard:
    """One TFDS file instruction: examples ``[skip, skip + take)`` of one shard file."""

    filename: str
    skip: int
    take: int


WorkItems = Union[list[SourceFile], list[TfdsShard]]


# ---------------------------------------------------------------------------------------------
# Checks before any work: the work items.

def resolve_inputs(o: InputOptions) -> WorkItems:
    """The files (or TFDS shards) to read; raises PipelineError naming the bad flag."""
    if bool(o.inputs) == bool(o.tfds):
        raise PipelineError("give either --input (files) or --tfds (a TFDS dataset), not both")
    if o.max_line_bytes < 1024:
        raise PipelineError(f"--max_line_bytes={o.max_line_bytes} must be >= 1024")
    if o.chunk_bytes < 1:
        raise PipelineError(f"--chunk_bytes={o.chunk_bytes} must be >= 1")
    return _tfds_shards(o) if o.tfds else source_files(o.inputs)


def source_files(patterns: Sequence[str]) -> list[SourceFile]:
    """Every file matching ``patterns``, named by its path relative to their common directory."""
    paths = []
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as e:  # noqa: BLE001 - each file system raises its own errors
            raise PipelineError(f"--input {pattern!r}: cannot list files: {e}") from None
        files = [m.path for m in matched if not m.path.endswith("/")]
        if not files:
            raise PipelineError(f"--input {pattern!r} matches no file")
        paths.extend(files)
    paths = sorted(set(paths))
    base = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    # The relative name, not the absolute path, keys the randomness: moving the corpus
    # elsewhere gives the same examples.
    return [SourceFile(path, os.path.relpath(path, base)) for path in paths]


def _tfds_shards(o: InputOptions) -> list[TfdsShard]:
    """The file instructions of the TFDS split, checked against the dataset's features."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    name, _, split = o.tfds.partition(":")
    split = split or "train"
    try:
        info = tfds.builder(name, data_dir=o.tfds_data_dir or None).info
    except Exception as e:  # noqa: BLE001 - TFDS raises many kinds for a missing dataset
        raise PipelineError(f"--tfds {o.tfds!r} (data dir {o.tfds_data_dir or 'default'}): "
                            f"{type(e).__name__}: {e}") from None
    if o.tfds_text_feature not in info.features:
        raise PipelineError(f"--tfds_text_feature {o.tfds_text_feature!r} is not a feature of "
                            f"{name}; features: {', '.join(info.features)}")
    dtype = info.features[o.tfds_text_feature].dtype
    if tf.as_dtype(dtype) != tf.string:
        raise PipelineError(f"--tfds_text_feature {o.tfds_text_feature!r} of {name} is not text "
                            f"(dtype {dtype})")
    try:
        instructions = info.splits[split].file_instructions
    except Exception as e:  # noqa: BLE001 - unknown split names raise differently per version
        raise PipelineError(f"--tfds {o.tfds!r}: split {split!r} is not available (prepared "
                            f"splits: {', '.join(info.splits) or 'none'}): {e}") from None
    return [TfdsShard(i.filename, i.skip, i.take) for i in instructions]


# ---------------------------------------------------------------------------------------------
# Reading.

class ReadInputs(beam.PTransform):
    """Work items from :func:`resolve_inputs` → ``(TextChunks, counts)``."""

    def __init__(self, options: InputOptions, items: WorkItems):
        super().__init__()
        self.options, self.items = options, items

    def expand(self, pipeline):
        items = pipeline | "WorkItems" >> beam.Create(self.items)
        if self.options.tfds:
            return items | "ReadTfds" >> ReadTfds(self.options)
        return items | "ReadTextFiles" >> ReadTextFiles(self.options)


def is_json_lines(path: str) -> bool:
    """Whether ``path`` is JSON Lines (``.jsonl``/``.ndjson``, optionally compressed)."""
    base = path
    for suffix in (".gz", ".bz2", ".deflate", ".zst", ".lzma"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return base.endswith(JSON_LINES_SUFFIXES)


class _ReadTextFile(beam.DoFn):
    """SourceFile → TextChunks (and counts). Reads one file sequentially, as bytes."""

    def __init__(self, options: InputOptions):
        self.options = options

    def process(self, source: SourceFile) -> Iterator:
        counts = Counts(files=1)
        o = self.options
        # .gz is decompressed by reading.read_blocks, which notices a truncated file.
        gzipped = source.path.endswith(".gz")
        try:
            f = FileSystems.open(source.path, mime_type="application/octet-stream",
                                 compression_type=(CompressionTypes.UNCOMPRESSED if gzipped
                                                   else CompressionTypes.AUTO))
        except Exception as e:  # noqa: BLE001 - any file system's error: count, keep going
            logger.warning("skipping %s: cannot open it: %s", source.path, e)
            counts["skipped.unreadable_files"] += 1
            yield report_counts(counts)
            return
        with f:
            blocks = reading.read_blocks(f, source.path, counts, gzipped)
            if is_json_lines(source.path):
                texts = reading.json_texts(blocks, o.json_field, o.max_json_bytes, counts)
                chunks = reading.records_chunks(texts, source.name, o.max_line_bytes,
                                                o.chunk_bytes, counts)
            else:
                chunks = reading.text_file_chunks(blocks, source.name, o.max_line_bytes,
                                                  o.chunk_bytes, counts)
            yield from chunks
        yield report_counts(counts)


class ReadTextFiles(beam.PTransform):
    """Text / JSON Lines files → (TextChunks, counts); chunks are redistributed over workers.

    Reads with ``options.max_line_bytes``, ``chunk_bytes``, ``json_field`` and
    ``max_json_bytes``; which files to read comes in as the input SourceFiles.
    """

    def __init__(self, options: InputOptions):
        super().__init__()
        self.options = options

    def expand(self, sources):
        read = (sources
                | "SpreadFiles" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadTextFile(self.options)).with_outputs(
                    COUNTS, main="chunks"))
        # One file can hold many chunks: spread them so that tokenizing is parallel.
        return read.chunks | "SpreadChunks" >> beam.Reshuffle(), read[COUNTS]


class _ReadTfdsShard(beam.DoFn):
    """TfdsShard → TextChunks (and counts); one document per example."""

    def __init__(self, options: InputOptions):
        self.options = options
        self.name = options.tfds.partition(":")[0]

    def setup(self):
        import tensorflow_datasets as tfds

        self._tfds = tfds
        self._builder = tfds.builder(self.name, data_dir=self.options.tfds_data_dir or None)

    def process(self, shard: TfdsShard) -> Iterator:
        info = self._tfds.core.naming.FilenameInfo.from_str(os.path.basename(shard.filename))
        ds = self._builder.as_dataset(split=f"{info.split}[{info.shard_index}shard]",
                                      shuffle_files=False)
        feature = self.options.tfds_text_feature
        ds = ds.skip(shard.skip).take(shard.take).map(lambda ex: ex[feature])
        counts = Counts(files=1)
        # The source name leaves out the data_dir: the same dataset gives the same examples
        # wherever it is stored. Document indices count from the shard's first example.
        chunker = reading.records_chunks(ds.as_numpy_iterator(),
                                         f"{self.name}/{os.path.basename(shard.filename)}",
                                         self.options.max_line_bytes, self.options.chunk_bytes,
                                         counts)
        for chunk in chunker:
            chunk.parts = [(doc + shard.skip, part) for doc, part in chunk.parts]
            yield chunk
        yield report_counts(counts)


class ReadTfds(beam.PTransform):
    """TfdsShards of ``options.tfds`` → (TextChunks, counts): the ``tfds_text_feature`` of each
    example of the prepared dataset in ``tfds_data_dir``."""

    def __init__(self, options: InputOptions):
        super().__init__()
        self.fn = _ReadTfdsShard(options)

    def expand(self, shards):
        read = (shards
                | "SpreadShards" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(self.fn).with_outputs(COUNTS, main="chunks"))
        return read.chunks | "SpreadChunks" >> beam.Reshuffle(), read[COUNTS]


# ---------------------------------------------------------------------------------------------
# Command line.

def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The input flags, shared by both command lines."""
    d = InputOptions()
    parser.add_argument("--input", action="append", default=[], metavar="GLOB",
                        help="text or JSON Lines files (repeatable)")
    parser.add_argument("--tfds", default="", metavar="NAME[/CONFIG][:SPLIT]",
                        help="a prepared TFDS dataset instead of files")
    parser.add_argument("--tfds_data_dir", default="")
    parser.add_argument("--tfds_text_feature", default=d.tfds_text_feature)
    parser.add_argument("--max_line_bytes", type=int, default=d.max_line_bytes)
    parser.add_argument("--chunk_bytes", type=int, default=d.chunk_bytes,
                        help="text per unit of work; longer documents are packed in parts")
    parser.add_argument("--json_field", default=d.json_field)
    parser.add_argument("--max_json_bytes", type=int, default=d.max_json_bytes)


def input_options(args: argparse.Namespace) -> InputOptions:
    """InputOptions from flags added by :func:`add_input_arguments`."""
    return InputOptions(inputs=tuple(args.input), tfds=args.tfds,
                        tfds_data_dir=args.tfds_data_dir,
                        tfds_text_feature=args.tfds_text_feature,
                        max_line_bytes=args.max_line_bytes, chunk_bytes=args.chunk_bytes,
                        json_field=args.json_field, max_json_bytes=args.max_json_bytes)
