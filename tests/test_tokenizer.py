"""Tokenizer: parity with BERT's reference FullTokenizer, special ids, encoding, settings."""

import hashlib
import json
import os

import pytest
import tensorflow as tf

from electra_tf import tokenizer as tokenizer_lib
from electra_tf.tokenizer import Tokenizer, TokenizerError

PARITY_FILE = os.path.join(os.path.dirname(__file__), "data", "tokenizer_parity.json")


@pytest.fixture(scope="module")
def tok():
    return Tokenizer()


def test_packaged_vocab_hash_and_size():
    path = tokenizer_lib.default_vocab_path()
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == tokenizer_lib.BERT_UNCASED_VOCAB_SHA256
    assert len(tokenizer_lib.read_vocab(path)) == 30522


@pytest.mark.parametrize("fast", [False, True])
def test_parity_with_reference_full_tokenizer(fast):
    # Golden ids from google-research/bert's FullTokenizer (how: tests/data/make_tokenizer_parity.py).
    with open(PARITY_FILE, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    assert len(cases) >= 25
    got = Tokenizer(fast=fast).tokenize(tf.constant([c["text"] for c in cases])).to_list()
    mismatches = [(c["text"], c["tokens"], ids) for c, ids in zip(cases, got) if ids != c["ids"]]
    assert not mismatches, mismatches[:3]


def test_special_ids_come_from_the_vocab(tmp_path, tok):
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat",
                                "##s"]) + "\n", encoding="utf-8")
    small = Tokenizer(str(vocab))
    assert (small.pad_id, small.unk_id, small.cls_id, small.sep_id, small.mask_id) == (0, 1, 2, 3, 4)
    assert small.tokenize(tf.constant(["The cats dog"])).to_list() == [[5, 6, 7, 1]]


def test_bad_vocabularies_are_refused(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer(str(tmp_path / "missing.txt"))
    no_mask = tmp_path / "no_mask.txt"
    no_mask.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"\[MASK\]"):
        Tokenizer(str(no_mask))
    dup = tmp_path / "dup.txt"
    dup.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nthe\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="lines 6 and 7"):
        Tokenizer(str(dup))


def test_encode_single_and_pair_with_truncation(tok):
    single = tok.encode(tf.constant(["Hello", ""]), seq_length=6)
    assert single["token_ids"].numpy().tolist() == [[101, 7592, 102, 0, 0, 0],
                                                    [101, 102, 0, 0, 0, 0]]
    assert single["padding_mask"].numpy().tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert set(single) == {"token_ids", "segment_ids", "padding_mask"}
    # 7 + 2 tokens into a budget of 8 - 3 = 5: the longer segment shrinks first.
    pair = tok.encode(tf.constant(["the cat sat on the mat today"]), tf.constant(["a b"]),
                      seq_length=8)
    assert pair["token_ids"].numpy().tolist() == [[101, 1996, 4937, 2938, 102, 1037, 1038, 102]]
    assert pair["segment_ids"].numpy().tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert all(v.dtype == tf.int32 for v in pair.values())


def test_detokenize_roundtrip(tok):
    ids = tok.tokenize(tf.constant(["Unaffable strangers, at sea!"]))
    assert tok.detokenize(ids).numpy().tolist() == [b"unaffable strangers , at sea !"]


def test_settings_travel_and_mismatch_is_named(tok, tmp_path):
    settings = tok.settings()
    assert settings["vocab_sha256"] == tokenizer_lib.BERT_UNCASED_VOCAB_SHA256
    assert settings["special_tokens"]["[MASK]"] == 103
    tok.check_settings(json.loads(json.dumps(settings)), "a dataset")
    other = dict(settings, lower_case=False)
    with pytest.raises(TokenizerError, match="lower_case: run/metadata.json has False"):
        tok.check_settings(other, "run/metadata.json")


def test_tokenize_inside_tf_function(tok):
    fn = tf.function(lambda t: tok.encode(t, seq_length=8)["token_ids"],
                     input_signature=[tf.TensorSpec([None], tf.string)])
    assert fn(tf.constant(["Call me Ishmael."])).numpy().tolist() == [
        [101, 2655, 2033, 2003, 22444, 2884, 1012, 102]]


def test_pair_encoding_inside_tf_function(tok):
    spec = tf.TensorSpec([None], tf.string)
    fn = tf.function(lambda a, b: tok.encode(a, b, seq_length=8), input_signature=[spec, spec])
    out = fn(tf.constant(["the cat sat on the mat today"]), tf.constant(["a b"]))
    assert out["token_ids"].numpy().tolist() == [[101, 1996, 4937, 2938, 102, 1037, 1038, 102]]
