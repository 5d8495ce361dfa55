"""Each Beam transform on its own, with TestPipeline + assert_that (pipelines/transforms.py and
the read transforms of pipelines/inputs.py)."""

import functools
import gzip
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from electra_tf.tokenizer import Tokenizer
from pipelines import hashing
from pipelines.inputs import ReadTextFiles, SourceFile
from pipelines.options import BuildOptions, InputOptions
from pipelines.reading import Counts, TextChunk
from pipelines.records import RecordBatch
from pipelines.transforms import NAMESPACE, SumCounts, TokenizeAndPack, WriteShards


@functools.lru_cache(maxsize=None)
def _tokenizer() -> Tokenizer:
    """One packaged-vocabulary tokenizer per process (Beam callables refer to it by name)."""
    return Tokenizer()


@pytest.fixture(scope="module")
def tokenizer():
    return _tokenizer()


def _pipeline():
    return test_pipeline.TestPipeline(options=beam.options.pipeline_options.PipelineOptions(
        ["--runner=DirectRunner"]))


def test_read_text_files(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"Doc one.\nStill one.\n\nDoc two.\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as f:
        f.write(b'{"text": "Json doc."}\n{"oops": 1}\n')
    (tmp_path / "c.txt").write_bytes(b"")
    (tmp_path / "d.bin").write_bytes(b"\x7fELF\x02\x01\x00\x00binary")
    sources = [SourceFile(str(tmp_path / n), n) for n in ("a.txt", "b.jsonl.gz", "c.txt", "d.bin")]
    expected_counts = Counts({"files": 4, "documents": 3, "lines": 4, "skipped.empty_files": 1,
                              "skipped.binary_files": 1, "skipped.invalid_json_records": 1})
    p = _pipeline()
    chunks, counts = p | beam.Create(sources) | ReadTextFiles(InputOptions())
    assert_that(chunks | beam.Map(lambda c: (c.source, c.parts, c.lines_per_part, c.lines)),
                equal_to([("a.txt", [(0, 0), (1, 0)], [2, 1],
                           [b"Doc one.", b"Still one.", b"Doc two."]),
                          ("b.jsonl.gz", [(0, 0)], [1], [b"Json doc."])]),
                label="chunks")
    assert_that(counts | SumCounts(), equal_to([expected_counts]), label="counts")
    result = p.run()
    result.wait_until_finish()
    # The same counts are Beam metrics, for the runner's monitoring.
    metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    assert {m.key.metric.name: m.committed for m in metrics} == expected_counts


def test_read_text_files_cuts_chunks_at_chunk_bytes(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"Line one.\nLine two.\nLine three.\n\nNext doc.\n")
    with _pipeline() as p:
        chunks, _ = (p | beam.Create([SourceFile(str(tmp_path / "a.txt"), "a.txt")])
                     | ReadTextFiles(InputOptions(chunk_bytes=18)))
        # A chunk closes once it holds >= 18 bytes; the document goes on as its next part.
        assert_that(chunks | beam.Map(lambda c: (c.parts, c.lines)), equal_to([
            ([(0, 0)], [b"Line one.", b"Line two."]),
            ([(0, 1), (1, 0)], [b"Line three.", b"Next doc."])]))


def _parse(records: list[bytes], seq_length: int, keys=("token_ids", "segment_ids",
                                                          "padding_mask")) -> dict:
    parsed = tf.io.parse_example(records, {k: tf.io.FixedLenFeature([seq_length], tf.int64)
                                           for k in keys})
    return {k: v.numpy() for k, v in parsed.items()}


def _build_options(tokenizer, **kwargs) -> BuildOptions:
    """What TokenizeAndPack reads of the build's options (it reads no input or output path)."""
    return BuildOptions(output_dir="unused", input=InputOptions(), vocab=tokenizer.vocab_path,
                        **{"validation_fraction": 0.0, **kwargs})


def test_tokenize_and_pack(tokenizer):
    chunk = TextChunk("s.txt", parts=[(0, 0), (1, 0), (2, 0), (3, 0)],
                      lines=[b"Hello, world!", b"\x01\x02", "\ue000 \ue001 ok".encode(),
                             b"The cat sat. The dog ran far away."],
                      lines_per_part=[1, 1, 1, 1])
    options = _build_options(tokenizer, max_seq_length=16, seed=3)
    with _pipeline() as p:
        batches, counts = p | beam.Create([chunk]) | TokenizeAndPack(options,
                                                                     tokenizer.settings())
        texts = batches | beam.FlatMap(
            lambda b: [(b.split, r) for r in b.records()]) | beam.Map(
            lambda sr: (sr[0], _tokenizer().detokenize(
                _parse([sr[1]], 16)["token_ids"]).numpy()[0].decode()))
        # Document 0 has no inner boundary: A/B split in its middle. Document 1 normalizes to
        # nothing; 2 is two thirds [UNK]; 3 splits after its first sentence.
        assert_that(texts, equal_to([
            ("train", "[CLS] hello , [SEP] world ! [SEP]"),
            ("train", "[CLS] the cat sat . [SEP] the dog ran far away . [SEP]")]),
            label="examples")
        record_bytes = batches | beam.Map(lambda b: len(b.data)) | beam.CombineGlobally(sum)
        totals = counts | SumCounts()
        assert_that(totals | beam.Map(lambda c, n: c.pop("record_bytes.train") == n and c,
                                      beam.pvalue.AsSingleton(record_bytes)),
                    equal_to([Counts({
                        "tokens_in": 4 + 0 + 3 + 10, "tokens_written": 4 + 10,
                        "examples.train": 2, "padding_positions": 32 - (4 + 3) - (10 + 3),
                        "skipped.empty_documents": 1, "skipped.mostly_unk_documents": 1,
                        "skipped.mostly_unk_tokens": 3})]), label="counts")


def test_tokenize_and_pack_original_format_and_validation_split(tokenizer):
    chunk = TextChunk("s.txt", parts=[(i, 0) for i in range(40)],
                      lines=[b"hello"] * 40,  # one token: one example per document
                      lines_per_part=[1] * 40)
    options = _build_options(tokenizer, max_seq_length=12, seed=0, validation_fraction=0.25,
                             format="original")
    with _pipeline() as p:
        batches, _ = p | beam.Create([chunk]) | TokenizeAndPack(options)
        summary = batches | beam.Map(lambda b: (b.split, len(b), sorted(
            _parse(b.records(), 12, ("input_ids", "input_mask", "segment_ids")))))
        # Held out per document by a hash of (seed, source, document): here 11 of 40.
        held_out = int((hashing.unit_float(hashing.hash_combine(hashing.hash_combine(
            hashing.source_key(0, "s.txt"), np.arange(40)), hashing.VALIDATION)) < 0.25).sum())
        assert held_out == 11
        assert_that(summary, equal_to([
            ("train", 29, ["input_ids", "input_mask", "segment_ids"]),
            ("validation", 11, ["input_ids", "input_mask", "segment_ids"])]))


def _batch(split, keys):
    records = [b"record-%d" % k for k in keys]
    return RecordBatch(split, b"".join(records),
                       np.cumsum([0] + [len(r) for r in records], dtype=np.int64),
                       np.array(keys, np.uint64))


def test_write_shards(tmp_path):
    out = str(tmp_path)
    batches = [_batch("train", range(0, 30)), _batch("train", range(30, 50)),
               _batch("validation", range(100, 105))]
    with _pipeline() as p:
        num_shards = p | "Shards" >> beam.Create([{"train": 3, "validation": 2}])
        infos = p | beam.Create(batches) | WriteShards(out, "", num_shards)
        assert_that(infos | beam.Map(lambda i: (i.split, i.index, i.num_shards)),
                    equal_to([("train", 0, 3), ("train", 1, 3), ("train", 2, 3),
                              ("validation", 0, 2), ("validation", 1, 2)]))
    names = sorted(os.listdir(out))
    assert names == ["train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
                     "train-00002-of-00003.tfrecord", "validation-00000-of-00002.tfrecord",
                     "validation-00001-of-00002.tfrecord"]
    read = {n: [r.numpy() for r in tf.data.TFRecordDataset(os.path.join(out, n))]
            for n in names}
    train = [r for n in names[:3] for r in read[n]]
    assert sorted(train) == sorted(b"record-%d" % k for k in range(50))
    assert sorted(r for n in names[3:] for r in read[n]) == [
        b"record-%d" % k for k in range(100, 105)]
    assert all(read[n] for n in names[:3])  # 50 records over 3 shards: none empty


def test_sum_counts_flattens_and_adds():
    with _pipeline() as p:
        a = p | "A" >> beam.Create([Counts(x=1), Counts(x=2, y=1)])
        b = p | "B" >> beam.Create([Counts(y=5)])
        assert_that((a, b) | SumCounts(), equal_to([Counts(x=3, y=6)]))
