"""End to end (pipelines/build_pretraining_data.py): bad input → shards, metadata, determinism.

One small corpus holds each kind of bad input next to real text; the pipeline runs on it once
in-process and once with two worker processes, and the tests read what it wrote.
"""

import collections
import filecmp
import gzip
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from electra_tf import corpus
from electra_tf.tokenizer import normalize
from electra_tf.training import input as input_lib
from electra_tf.training import records as records_lib
from pipelines.build_pretraining_data import BuildOptions, build_pretraining_data, parse_args
from pipelines.inputs import InputOptions, PipelineError

CORPUS = corpus.corpus_dir()
SEQ_LENGTH = 32


def _austen_documents(n: int) -> bytes:
    """The first ``n`` documents of the packaged Austen file, as they are stored."""
    text = gzip.open(os.path.join(CORPUS, "jane_austen.txt.gz")).read()
    return b"\n\n".join(text.split(b"\n\n")[:n]) + b"\n"


def _write_corpus(root) -> dict:
    """Writes the test corpus; returns {file name: its good documents as text (or [])}."""
    good = _austen_documents(4)
    # One 8 KB line (the longest Austen paragraph has 2 KB): cut at --max_line_bytes=4096.
    sotu = gzip.open(os.path.join(CORPUS, "sotu.txt.gz")).read().split(b"\n")[0]
    latin1 = "Un café, s'il vous plaît.\nMerci.\n".encode("latin-1")
    records = (b'{"text": "A JSON record.\\nIts second line."}\n{"text": broken\n'
               b'{"title": "no text field"}\n{"text": ""}\n')
    junk = ("\x01\x02\x7f\x1b\n\n"                             # normalizes to nothing
            "\ue000\ue001\ue002 \ue003\ue004 fine\n\n"         # mostly [UNK]
            "A short, normal last document.\n").encode()
    files = {
        "good.txt": good, "sotu.txt": sotu + b"\n", "latin1.txt": latin1,
        "records.jsonl": records, "junk.txt": junk, "empty.txt": b"", "blank.txt": b"\n \n\t\n",
        "image.bin": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        "broken.txt.gz": gzip.compress(good)[:12],  # cut inside the gzip header
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    text = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
    return {"good.txt": text(good).split("\n\n"), "sotu.txt": [text(sotu)],
            "latin1.txt": [text(latin1)], "records.jsonl": ["A JSON record.\nIts second line."],
            "junk.txt": ["A short, normal last document."]}


def _options(corpus_dir, output_dir, **kwargs) -> BuildOptions:
    values = dict(output_dir=str(output_dir),
                  input=InputOptions(inputs=(str(corpus_dir / "*"),), max_line_bytes=4096),
                  max_seq_length=SEQ_LENGTH, num_shards=3, validation_fraction=0.3, seed=7)
    values.update(kwargs)
    return BuildOptions(**values)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    documents = _write_corpus(corpus)
    out = tmp_path_factory.mktemp("out")
    metadata = build_pretraining_data(_options(corpus, out))
    return corpus, documents, out, metadata


def test_counts_name_every_skip_and_repair(built):
    _, _, out, metadata = built
    counts = metadata["counts"]
    assert {k: counts[k] for k in ("files", "documents")} == {"files": 9, "documents": 11}
    assert counts["skipped"] == {
        "empty_files": 2, "binary_files": 1, "unreadable_files": 1, "invalid_json_records": 2,
        "json_records_too_long": 0, "empty_documents": 2, "mostly_unk_documents": 1,
        "mostly_unk_tokens": 3}  # [UNK] [UNK] fine
    assert counts["repaired"] == {"invalid_utf8_lines": 1, "long_lines_split": 1}
    # Every token read is written once, apart from the counted skips.
    assert counts["tokens_in"] == counts["tokens_written"] + counts["skipped"]["mostly_unk_tokens"]
    assert counts["examples"] == sum(s["num_examples"] for s in metadata["splits"].values())
    assert 0 < counts["padding_fraction"] < 0.2 and counts["unk_rate"] < 0.001


def test_metadata_follows_the_contract(built, tokenizer):
    _, _, out, metadata = built
    assert metadata["format"] == "electra_tf" and metadata["seq_length"] == SEQ_LENGTH
    assert metadata["compression"] == "" and metadata["tokenizer"] == tokenizer.settings()
    assert metadata["options"]["seed"] == 7 and metadata["options"]["num_shards"] == 3
    assert sorted(os.listdir(out)) == [
        "COMPLETED", "metadata.json", "train-00000-of-00003.tfrecord",
        "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord",
        "validation-00000-of-00001.tfrecord"]
    assert metadata["splits"]["train"]["file_pattern"] == "train-*-of-00003.tfrecord"
    for split, info in metadata["splits"].items():
        files = tf.io.gfile.glob(os.path.join(out, info["file_pattern"]))
        assert sum(1 for f in files for _ in tf.data.TFRecordDataset(f)) == info["num_examples"]
    assert metadata["splits"]["validation"]["num_examples"] > 0


def _examples(out) -> dict:
    files = sorted(tf.io.gfile.glob(os.path.join(out, "*.tfrecord")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    spec = {k: tf.io.FixedLenFeature([SEQ_LENGTH], tf.int64) for k in records_lib.FEATURES}
    return {k: v.numpy() for k, v in tf.io.parse_example(records, spec).items()}


def test_shards_decode_to_the_input_text(built, tokenizer):
    _, documents, out, _ = built
    ex = _examples(out)
    specials = np.isin(ex["token_ids"], [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id])
    # Layout: [CLS] A [SEP] (B [SEP]), padding only at the end, segment 1 only for B.
    assert (ex["token_ids"][:, 0] == tokenizer.cls_id).all()
    assert (ex["padding_mask"] == (ex["token_ids"] != tokenizer.pad_id)).all()
    assert ((ex["segment_ids"] == 0) | (ex["padding_mask"] == 1)).all()
    # The multiset of written tokens is exactly that of the good documents.
    good = [doc for docs in documents.values() for doc in docs]
    lines = [line for doc in good for line in doc.split("\n") if line.strip()]
    expected = tokenizer.tokenize(tf.constant(lines)).flat_values.numpy()
    assert collections.Counter(ex["token_ids"][~specials].tolist()) == collections.Counter(
        expected.tolist())
    # Each segment is a contiguous run of one document's text (modulo normalization).
    corpus_text = "\n".join(t.numpy().decode() for t in normalize(tf.constant(good)))
    squeezed = corpus_text.replace(" ", "").replace("\n", "")
    segments = []
    for ids, seg in zip(ex["token_ids"], ex["segment_ids"]):
        for s in (0, 1):
            piece = ids[(seg == s) & ~np.isin(ids, [tokenizer.cls_id, tokenizer.sep_id,
                                                      tokenizer.pad_id])]
            if len(piece):
                segments.append(piece)
    texts = tokenizer.detokenize(tf.ragged.constant(segments)).numpy()
    missing = [t for t in texts if t.decode().replace(" ", "").replace("##", "") not in squeezed]
    assert not missing, missing[:3]


def test_two_workers_write_byte_identical_output(built, tmp_path):
    corpus, _, out, metadata = built
    out2 = tmp_path / "two_workers"
    metadata2 = build_pretraining_data(
        _options(corpus, out2),
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    names = sorted(os.listdir(out))
    assert sorted(os.listdir(out2)) == names
    match, mismatch, errors = filecmp.cmpfiles(out, out2, [n for n in names
                                                           if n != "metadata.json"], shallow=False)
    assert not mismatch and not errors and len(match) == len(names) - 1
    metadata2["options"]["output_dir"] = metadata["options"]["output_dir"]
    assert metadata2 == metadata


def test_pretraining_reader_accepts_the_output(built, tokenizer):
    _, _, out, metadata = built
    shards = input_lib.find_shards(str(out), SEQ_LENGTH, tokenizer, split="train")
    assert shards.num_examples == metadata["splits"]["train"]["num_examples"]
    batch = next(iter(input_lib.pretraining_dataset(shards, batch_size=4, seed=0)))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "token_ids": (4, SEQ_LENGTH), "segment_ids": (4, SEQ_LENGTH),
        "padding_mask": (4, SEQ_LENGTH), "example_index": (4,)}


def test_original_format_gzip_and_overwrite(built, tmp_path, tokenizer):
    corpus = built[0]
    out = tmp_path / "original"
    out.mkdir()
    (out / "COMPLETED").write_bytes(b"")
    (out / "train-00000-of-00009.tfrecord").write_bytes(b"stale")
    options = _options(corpus, out, input=InputOptions(inputs=(str(corpus / "good.txt"),)),
                       format="original", compression="GZIP", num_shards=0)
    with pytest.raises(PipelineError, match="already holds completed data"):
        build_pretraining_data(options)
    metadata = build_pretraining_data(BuildOptions(**{**options.__dict__, "overwrite": True}))
    assert sorted(os.listdir(out)) == ["COMPLETED", "metadata.json",
                                       "train-00000-of-00001.tfrecord.gz",
                                       "validation-00000-of-00001.tfrecord.gz"]
    assert metadata["format"] == "original" and metadata["compression"] == "GZIP"
    record = next(iter(tf.data.TFRecordDataset(str(out / "train-00000-of-00001.tfrecord.gz"),
                                               compression_type="GZIP")))
    assert sorted(tf.train.Example.FromString(record.numpy()).features.feature) == [
        "input_ids", "input_mask", "segment_ids"]
    shards = input_lib.find_shards(str(out), SEQ_LENGTH, tokenizer)
    batch = next(iter(input_lib.pretraining_dataset(shards, batch_size=2, seed=0)))
    assert set(batch) == {"token_ids", "segment_ids", "padding_mask", "example_index"}


def test_problems_are_reported_before_any_work(built, tmp_path):
    corpus = built[0]
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("[PAD]\n[UNK]\nhello\n")
    cases = [
        (dict(input=InputOptions(inputs=(str(tmp_path / "nothing-*.txt"),))), "matches no file"),
        (dict(vocab=str(tmp_path / "missing.txt")), "missing.txt"),
        (dict(vocab=str(bad_vocab)), "lacks the special tokens"),
        (dict(output_dir=str(not_a_dir / "sub")), "is not writable"),
        (dict(max_seq_length=4), "max_seq_length=4"),
        (dict(input=InputOptions()), "either --input"),
        (dict(input=InputOptions(inputs=(str(corpus / "good.txt"),), chunk_bytes=0)),
         "chunk_bytes=0"),
    ]
    for overrides, message in cases:
        out = overrides.pop("output_dir", tmp_path / "never")
        with pytest.raises(PipelineError, match=message):
            build_pretraining_data(_options(corpus, out, **overrides))
        assert not (tmp_path / "never").exists()


def test_command_line_passes_beam_options_through():
    options, beam_args = parse_args([
        "--input", "a/*.txt", "--input", "b.jsonl", "--output_dir", "out", "--compression",
        "gzip", "--no-lower_case", "--chunk_bytes", "4096", "--vocab", "v.txt",
        "--runner=DirectRunner", "--direct_num_workers=2"])
    assert options.input.inputs == ("a/*.txt", "b.jsonl") and options.compression == "GZIP"
    assert not options.lower_case and options.max_seq_length == 128
    assert options.input.chunk_bytes == 4096 and options.vocab == "v.txt"
    assert beam_args == ["--runner=DirectRunner", "--direct_num_workers=2"]
    assert json.loads(json.dumps(options.__dict__, default=lambda o: o.__dict__))
