"""The Beam transforms of the pre-training data pipeline, each usable and tested on its own.

::

    SourceFile / TfdsShard ──ReadTextFiles / ReadTfds──▶ TextChunk  (in pipelines/inputs.py)
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
import math
import os
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from electra_tf.training.records import FEATURES, ORIGINAL_FEATURES
from pipelines import hashing
from pipelines.options import BuildOptions
from pipelines.packing import SpecialIds, pack
from pipelines.reading import Counts, TextChunk
from pipelines.records import RecordBatch, serialize_examples, shard_name, shard_of, shard_order

NAMESPACE = "electra_tf.preprocess"
COUNTS = "counts"
SPLITS = ("train", "validation")
SENTENCE_END_TOKENS = (".", "!", "?")


def report_counts(counts: Counts) -> beam.pvalue.TaggedOutput:
    """Adds ``counts`` to the Beam metrics and returns them as the ``counts`` output."""
    for name, value in sorted(counts.items()):
        if value:
            Metrics.counter(NAMESPACE, name).inc(int(value))
    return beam.pvalue.TaggedOutput(COUNTS, Counts(counts))


class _TokenizeAndPack(beam.DoFn):
    """TextChunk → RecordBatches (one per split present) and counts."""

    def __init__(self, options: BuildOptions, tokenizer_settings: Optional[dict]):
        self.options, self.tokenizer_settings = options, tokenizer_settings

    def setup(self):
        import tensorflow as tf

        from electra_tf.tokenizer import Tokenizer

        # fast: FastWordpieceTokenizer, the same ids as the default (tested in
        # tests/test_tokenizer.py), 1.3–2.9× faster.
        tokenizer = Tokenizer(self.options.vocab or None, lower_case=self.options.lower_case,
                              fast=True)
        if self.tokenizer_settings:
            tokenizer.check_settings(self.tokenizer_settings, "the launcher's tokenizer")
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
        validation = hashing.unit_float(
            hashing.hash_combine(doc_keys, hashing.VALIDATION)) < o.validation_fraction
        packed = pack(tokens, part_lengths, hashing.hash_combine(doc_keys, parts), boundaries,
                      o.max_seq_length, self._special)

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
        yield report_counts(counts)

    def _tokenize_lines(self, lines: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """All tokens of ``lines`` concatenated (int64), and the count per line."""
        if not lines:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ragged = self._tokenize(lines)
        return (ragged.flat_values.numpy().astype(np.int64),
                ragged.row_lengths().numpy().astype(np.int64))


class TokenizeAndPack(beam.PTransform):
    """TextChunks → (RecordBatches, counts): tokenize, pack (pipelines/packing.py), serialize.

    Args:
      options: the build's options; this reads ``vocab``, ``lower_case``, ``max_seq_length``,
        ``seed``, ``validation_fraction``, ``max_unk_fraction`` and ``format``.
      tokenizer_settings: ``Tokenizer.settings()`` as the launcher saw them (vocabulary sha256,
        casing, special ids); each worker checks that its tokenizer agrees. None: no check.
    """

    def __init__(self, options: BuildOptions, tokenizer_settings: Optional[dict] = None):
        super().__init__()
        self.options, self.tokenizer_settings = options, tokenizer_settings

    def expand(self, chunks):
        out = chunks | "TokenizeAndPack" >> beam.ParDo(
            _TokenizeAndPack(self.options, self.tokenizer_settings)).with_outputs(
                COUNTS, main="records")
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
