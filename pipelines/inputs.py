"""The input side shared by both pipelines: check the inputs before any work, then read them.

Input is either file globs (plain text or JSON Lines, any Beam file system, any compression
Beam recognizes) or a prepared TFDS split. :func:`resolve_inputs` turns the flags into a list of
work items and fails early with a message naming the flag; :class:`ReadInputs` reads them into
``TextChunk`` s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.transforms import ReadOptions, ReadTextFiles, ReadTfds, SourceFile, TfdsShard


class PipelineError(ValueError):
    """The run cannot start: the message names the input, file or option and what is wrong."""


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """Where the text comes from.

    Attributes:
      inputs: globs of text (``.txt`` or any name; ``.gz``/``.bz2`` decompressed) or JSON Lines
        (``.jsonl``/``.ndjson``) files. Exclusive with ``tfds``.
      tfds: ``name[/config][:split]`` of a prepared TFDS dataset (split default ``train``).
      tfds_data_dir: its data directory (TFDS's default when empty).
      tfds_text_feature: the text feature of each TFDS example (one document each).
      max_line_bytes: longer lines are cut at whitespace (a 1 GB line costs 1 MiB of memory).
      json_field: text field of JSON Lines records.
      max_json_bytes: longer JSON Lines records are skipped.
    """

    inputs: tuple[str, ...] = ()
    tfds: str = ""
    tfds_data_dir: str = ""
    tfds_text_feature: str = "text"
    max_line_bytes: int = 1 << 20
    json_field: str = "text"
    max_json_bytes: int = 64 << 20


WorkItems = Union[list[SourceFile], list[TfdsShard]]


def resolve_inputs(o: InputOptions) -> WorkItems:
    """The files (or TFDS shards) to read; raises PipelineError naming the bad flag."""
    if bool(o.inputs) == bool(o.tfds):
        raise PipelineError("give either --input (files) or --tfds (a TFDS dataset), not both")
    if o.max_line_bytes < 1024:
        raise PipelineError(f"--max_line_bytes={o.max_line_bytes} must be >= 1024")
    return _tfds_shards(o) if o.tfds else source_files(o.inputs)


class ReadInputs(beam.PTransform):
    """Work items from :func:`resolve_inputs` → ``(TextChunks, counts)``."""

    def __init__(self, options: InputOptions, items: WorkItems):
        super().__init__()
        self.options, self.items = options, items

    def expand(self, pipeline):
        o = self.options
        read = ReadOptions(max_line_bytes=o.max_line_bytes, json_field=o.json_field,
                           max_json_bytes=o.max_json_bytes)
        items = pipeline | "WorkItems" >> beam.Create(self.items)
        if o.tfds:
            name = o.tfds.partition(":")[0]
            return items | "ReadTfds" >> ReadTfds(name, o.tfds_data_dir or None,
                                                  o.tfds_text_feature, read)
        return items | "ReadTextFiles" >> ReadTextFiles(read)


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
    parser.add_argument("--json_field", default=d.json_field)
    parser.add_argument("--max_json_bytes", type=int, default=d.max_json_bytes)


def input_options(args: argparse.Namespace) -> InputOptions:
    """InputOptions from flags added by :func:`add_input_arguments`."""
    return InputOptions(inputs=tuple(args.input), tfds=args.tfds,
                        tfds_data_dir=args.tfds_data_dir,
                        tfds_text_feature=args.tfds_text_feature,
                        max_line_bytes=args.max_line_bytes, json_field=args.json_field,
                        max_json_bytes=args.max_json_bytes)
