"""The Beam transforms of the pre-training data pipeline, each usable and tested on its own.

::

    SourceFile / TfdsShard ──ReadTextFiles / ReadTfds──▶ TextChunk
    TextChunk ──TokenizeAndPack──▶ RecordBatch (serialized examples of one split)
    RecordBatch + shard counts ──WriteShards──▶ ShardInfo (one per file written)

Every transform with something to report returns ``(main output, counts)``: ``counts`` is a
PCollection of :class:`~pipelines.reading.Counts` that :class:`SumCounts` adds up. The same
numbers are Beam metrics (namespace ``electra_tf.preprocess``), visible in the runner's UI while
the job runs; the counts PCollection is what lands in ``metadata.json``, because it is exact on
every runner (metric results are only "attempted" on some).

Heavy state (the tokenizer) is created once per worker in ``DoFn.setup``; work is batched per
chunk of about a megabyte of text, so Beam's per-element cost is paid per chunk, not per line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from electra_tf.training.records import FEATURES, ORIGINAL_FEATURES
from pipelines import hashing, reading
from pipelines.packing import SpecialIds, pack
from pipelines.reading import Counts, TextChunk
from pipelines.records import RecordBatch, serialize_examples, shard_name, shard_of, shard_order

NAMESPACE = "electra_tf.preprocess"
COUNTS = "counts"
SPLITS = ("train", "validation")
SENTENCE_END_TOKENS = (".", "!", "?")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")

logger = logging.getLogger(__name__)


def _report(counts: Counts) -> beam.pvalue.TaggedOutput:
    """Adds ``counts`` to the Beam metrics and returns them as the ``counts`` output."""
    for name, value in sorted(counts.items()):
        if value:
            Metrics.counter(NAMESPACE, name).inc(int(value))
    return beam.pvalue.TaggedOutput(COUNTS, Counts(counts))


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How raw input is cut into documents, lines and chunks (see ``pipelines/reading.py``).

    Attributes:
      max_line_bytes: longer lines are cut into pieces at whitespace.
      chunk_bytes: about this much text makes one unit of work; longer documents are cut
        into parts.
      json_field: the text field of JSON Lines records.
      max_json_bytes: longer JSON Lines records are skipped (they cannot be parsed in pieces).
    """

    max_line_bytes: int = 1 << 20
    chunk_bytes: int = 1 << 20
    json_field: str = "text"
    max_json_bytes: int = 64 << 20


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """An input file: where it is, and its stable name (keys the randomness of its examples)."""

    path: str
    name: str


def is_json_lines(path: str) -> bool:
    """Whether ``path`` is JSON Lines (``.jsonl``/``.ndjson``, optionally compressed)."""
    base = path
    for suffix in (".gz", ".bz2", ".deflate", ".zst", ".lzma"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return base.endswith(JSON_LINES_SUFFIXES)


class _ReadTextFile(beam.DoFn):
    """SourceFile → TextChunks (and counts). Reads one file sequentially, as bytes."""

    def __init__(self, options: ReadOptions):
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
            yield _report(counts)
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
        yield _report(counts)


class ReadTextFiles(beam.PTransform):
    """Text / JSON Lines files → (TextChunks, counts); chunks are redistributed over workers."""

    def __init__(self, options: ReadOptions):
        super().__init__()
        self.options = options

    def expand(self, sources):
        read = (sources
                | "SpreadFiles" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadTextFile(self.options)).with_outputs(
                    COUNTS, main="chunks"))
        # One file can hold many chunks: spread them so that tokenizing is parallel.
        return read.chunks | "SpreadChunks" >> beam.Reshuffle(), read[COUNTS]


@dataclasses.dataclass(frozen=True)
class TfdsShard:
    """One TFDS file instruction: examples ``[skip, skip + take)`` of one shard file."""

    filename: str
    skip: int
    take: int


class _ReadTfdsShard(beam.DoFn):
    """TfdsShard → TextChunks (and counts); one document per example."""

    def __init__(self, name: str, data_dir: Optional[str], text_feature: str,
                 options: ReadOptions):
        self.name, self.data_dir, self.text_feature = name, data_dir, text_feature
        self.options = options

    def setup(self):
        import tensorflow_datasets as tfds

        self._tfds = tfds
        self._builder = tfds.builder(self.name, data_dir=self.data_dir)

    def process(self, shard: TfdsShard) -> Iterator:
        info = self._tfds.core.naming.FilenameInfo.from_str(os.path.basename(shard.filename))
        ds = self._builder.as_dataset(split=f"{info.split}[{info.shard_index}shard]",
                                      shuffle_files=False)
        ds = ds.skip(shard.skip).take(shard.take).map(lambda ex: ex[self.text_feature])
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
        yield _report(counts)


class ReadTfds(beam.PTransform):
    """TfdsShards → (TextChunks, counts): the ``text_feature`` of a prepared TFDS dataset."""

    def __init__(self, name: str, data_dir: Optional[str], text_feature: str,
                 options: ReadOptions):
        super().__init__()
        self.fn = _ReadTfdsShard(name, data_dir, text_feature, options)

    def expand(self, shards):
        read = (shards
                | "SpreadShards" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(self.fn).with_outputs(COUNTS, main="chunks"))
        return read.chunks | "SpreadChunks" >> beam.Reshuffle(), read[COUNTS]


@dataclasses.dataclass(frozen=True)
class PackOptions:
    """How chunks become examples.

    Attributes:
      vocab_path, lower_case: the tokenizer (``electra_tf.tokenizer.Tokenizer``); an empty
        path is the packaged vocabulary, wherever the worker installed the package.
      tokenizer_settings: ``Tokenizer.settings()`` as the launcher saw them (vocabulary
        sha256, casing, special ids); each worker checks that its tokenizer agrees.
      seq_length: tokens per example.
      seed: keys every random choice (with the source name and document index).
      validation_fraction: documents held out for the ``validation`` split.
      max_unk_fraction: a document part with a larger share of ``[UNK]`` is skipped.
      format: ``electra_tf`` (``token_ids``/``segment_ids``/``padding_mask``) or ``original``
        (google-research/electra's ``input_ids``/``segment_ids``/``input_mask``).
    """

    vocab_path: str = ""
    tokenizer_settings: Optional[dict] = None
    lower_case: bool = True
    seq_length: int = 128
    seed: int = 0
    validation_fraction: float = 0.0
    max_unk_fraction: float = 0.5
    format: str = "electra_tf"


class _TokenizeAndPack(beam.DoFn):
    """TextChunk → RecordBatches (one per split present) and counts."""

    def __init__(self, options: PackOptions):
        self.options = options

    def setup(self):
        import tensorflow as tf

        from electra_tf.tokenizer import Tokenizer

        # fast: FastWordpieceTokenizer, the same ids as the default (tested in
        # tests/test_tokenizer.py), 1.3–2.9× faster.
        tokenizer = Tokenizer(self.options.vocab_path or None, lower_case=self.options.lower_case,
                              fast=True)
        if self.options.tokenizer_settings:
            tokenizer.check_settings(self.options.tokenizer_settings, "the launcher's tokenizer")
        # One graph for every batch (no retracing); autograph has nothing to convert here and
        # would add seconds of tracing per worker.
        self._tokenize = tf.function(tokenizer.tokenize, autograph=False,
                                     input_signature=[tf.TensorSpec([None], tf.string)])
        self._unk_id = tokenizer.unk_id
        self._special = SpecialIds(pad=tokenizer.pad_id, cls=tokenizer.cls_id,
                                   sep=tokenizer.sep_id)
        self._sentence_ends = np.array(
            [tokenizer.vocab.index(t) for t in SENTENCE_END_TOKENS if t in tokenizer.vocab])
        names = ORIGINAL_FEATURES if self.options.format == "original" else {}
        self._names = {k: names.get(k, k) for k in FEATURES}

    def process(self, chunk: TextChunk) -> Iterator:
        o = self.options
        counts = Counts()
        tokens, line_lengths = self._tokenize_lines(chunk.lines)
        counts["tokens_in"] += len(tokens)
        num_parts = len(chunk.parts)
        line_part = np.repeat(np.arange(num_parts), chunk.lines_per_part)
        part_lengths = np.bincount(line_part, weights=line_lengths,
                                   minlength=num_parts).astype(np.int64)
        token_part = np.repeat(line_part, line_lengths)
        unks = np.bincount(token_part, weights=tokens == self._unk_id, minlength=num_parts)

        # Text that normalizes to nothing, and text the vocabulary cannot represent (wrong
        # language or encoding, binary junk): skipped and counted, never silently packed.
        empty = part_lengths == 0
        mostly_unk = ~empty & (unks > o.max_unk_fraction * part_lengths)
        counts["skipped.empty_documents"] += int(empty.sum())
        counts["skipped.mostly_unk_documents"] += int(mostly_unk.sum())
        counts["skipped.mostly_unk_tokens"] += int(part_lengths[mostly_unk].sum())
        keep = ~(empty | mostly_unk)
        tokens = tokens[keep[token_part]]
        part_lengths = np.where(keep, part_lengths, 0)
        # A/B may split where a line ends or after a sentence-final token.
        boundaries = np.union1d(np.cumsum(line_lengths[keep[line_part]]),
                                np.flatnonzero(np.isin(tokens, self._sentence_ends)) + 1)

        docs = np.array([d for d, _ in chunk.parts], np.int64).reshape(-1)
        parts = np.array([p for _, p in chunk.parts], np.int64).reshape(-1)
        doc_keys = hashing.hash_combine(hashing.source_key(o.seed, chunk.source), docs)
        validation = hashing.uniform(
            hashing.hash_combine(doc_keys, hashing.VALIDATION)) < o.validation_fraction
        packed = pack(tokens, part_lengths, hashing.hash_combine(doc_keys, parts), boundaries,
                      o.seq_length, self._special)

        counts["tokens_written"] += int(packed.content.sum())
        counts["unk_tokens_written"] += int((packed.token_ids == self._unk_id).sum())
        counts["padding_positions"] += int((packed.padding_mask == 0).sum())
        for split, selected in (("train", ~validation), ("validation", validation)):
            rows = np.flatnonzero(selected[packed.part])
            if not len(rows):
                continue
            data, offsets = serialize_examples(
                {self._names[k]: getattr(packed, k)[rows] for k in FEATURES})
            counts[f"examples.{split}"] += len(rows)
            counts[f"record_bytes.{split}"] += len(data)
            yield RecordBatch(split, data, offsets, packed.key[rows])
        yield _report(counts)

    def _tokenize_lines(self, lines: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """All tokens of ``lines`` concatenated (int64), and the count per line."""
        if not lines:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ragged = self._tokenize(lines)
        return (ragged.flat_values.numpy().astype(np.int64),
                ragged.row_lengths().numpy().astype(np.int64))


class TokenizeAndPack(beam.PTransform):
    """TextChunks → (RecordBatches, counts): tokenize, pack (pipelines/packing.py), serialize."""

    def __init__(self, options: PackOptions):
        super().__init__()
        self.options = options

    def expand(self, chunks):
        out = chunks | "TokenizeAndPack" >> beam.ParDo(
            _TokenizeAndPack(self.options)).with_outputs(COUNTS, main="records")
        return out.records, out[COUNTS]


class _SumCounts(beam.CombineFn):
    def create_accumulator(self):
        return Counts()

    def add_input(self, total, counts):
        total.update(counts)
        return total

    def merge_accumulators(self, totals):
        merged = Counts()
        for total in totals:
            merged.update(total)
        return merged

    def extract_output(self, total):
        return Counts(total)


class SumCounts(beam.PTransform):
    """Counts (one or several PCollections) → a single Counts with every total."""

    def expand(self, counts):
        if isinstance(counts, (tuple, list)):
            counts = counts | "Flatten" >> beam.Flatten()
        return counts | "Sum" >> beam.CombineGlobally(_SumCounts())


MAX_SHARD_BYTES = 256 << 20


def shards_for(record_bytes: int, max_shard_bytes: int = MAX_SHARD_BYTES) -> int:
    """The fewest shards that keep each under ``max_shard_bytes`` on average (at least 1)."""
    return max(1, math.ceil(record_bytes / max_shard_bytes))


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """A shard file written: its split, index, shard count, examples and record bytes."""

    split: str
    index: int
    num_shards: int
    examples: int
    record_bytes: int


class _AssignShards(beam.DoFn):
    """RecordBatch → ((split, shard, num_shards), the batch's records of that shard)."""

    def process(self, batch: RecordBatch, num_shards: dict) -> Iterator:
        n = num_shards[batch.split]
        shards = shard_of(batch.keys, n)
        order = np.argsort(shards, kind="stable")
        values, starts = np.unique(shards[order], return_index=True)
        for shard, rows in zip(values, np.split(order, starts[1:])):
            yield (batch.split, int(shard), n), batch.take(rows)


class _WriteShard(beam.DoFn):
    """((split, shard, num_shards), RecordBatches) → one TFRecord file, records sorted by key."""

    def __init__(self, output_dir: str, compression: str):
        self.output_dir, self.compression = output_dir, compression

    def process(self, element) -> Iterator[ShardInfo]:
        import tensorflow as tf

        (split, shard, num_shards), batches = element
        batch = RecordBatch.concat(split, [b for b in batches if len(b)])
        path = os.path.join(self.output_dir,
                            shard_name(split, shard, num_shards, self.compression))
        options = tf.io.TFRecordOptions(compression_type=self.compression)
        with tf.io.TFRecordWriter(path, options) as writer:
            for record in batch.records(shard_order(batch)):
                writer.write(record)
        yield ShardInfo(split, shard, num_shards, len(batch), int(batch.offsets[-1]))


class WriteShards(beam.PTransform):
    """RecordBatches → ShardInfos: every shard of every split, written once, deterministically.

    Args:
      output_dir: where ``{split}-{i:05d}-of-{n:05d}.tfrecord[.gz]`` go.
      compression: ``""`` or ``"GZIP"``.
      num_shards: a singleton PCollection ``{split: shard count}``; each split in it gets all
        its shards, even empty ones, so readers always find ``n`` files.
    """

    def __init__(self, output_dir: str, compression: str, num_shards):
        super().__init__()
        self.output_dir, self.compression, self.num_shards = output_dir, compression, num_shards

    def expand(self, batches):
        side = beam.pvalue.AsSingleton(self.num_shards)
        assigned = batches | "AssignShards" >> beam.ParDo(_AssignShards(), side)
        every_shard = (batches.pipeline
                       | "One" >> beam.Create([None])
                       | "EveryShard" >> beam.FlatMap(_empty_shards, side))
        return ((assigned, every_shard)
                | "Flatten" >> beam.Flatten()
                | "GroupByShard" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteShard(self.output_dir, self.compression)))


def _empty_shards(_, num_shards: dict) -> Iterator:
    for split, n in sorted(num_shards.items()):
        for shard in range(n):
            yield (split, shard, n), RecordBatch.concat(split, [])
