"""Learning a WordPiece vocabulary: Beam + tensorflow-text's learner (pipelines/build_vocab.py)."""

import gzip

import pytest
import tensorflow as tf

from electra_tf import corpus
from electra_tf.tokenizer import SPECIAL_TOKENS, Tokenizer
from pipelines.build_vocab import VocabOptions, build_vocab
from pipelines.inputs import InputOptions, PipelineError

MOBY_DICK = corpus.corpus_path("moby_dick")


def _rates(vocab_path: str, lines: list[bytes]) -> tuple[float, float]:
    """([UNK] rate, tokens per whitespace word) of a vocabulary on ``lines``."""
    ids = Tokenizer(vocab_path).tokenize(tf.constant(lines)).flat_values.numpy()
    words = sum(len(line.split()) for line in lines)
    return float((ids == 1).mean()), len(ids) / words


def test_learned_vocabulary_beats_a_tiny_one(tmp_path):
    path = str(tmp_path / "vocab.txt")
    vocab = build_vocab(VocabOptions(output=path, input=InputOptions(inputs=(MOBY_DICK,)),
                                     vocab_size=1000, max_input_words=2000))
    assert vocab[:5] == list(SPECIAL_TOKENS)  # [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4
    assert 950 <= len(vocab) <= 1000  # the learner's 5% slack below the target
    assert {"the", "whale", "##ing"} <= set(vocab)
    tokenizer = Tokenizer(path)  # loads: no duplicates, special tokens present
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.mask_id) == (0, 1, 4)

    lines = [l for l in gzip.open(MOBY_DICK).read().split(b"\n") if l.strip()][:400]
    # Deliberately tiny: the special tokens and the letters, without ## continuations.
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("\n".join(list(SPECIAL_TOKENS) + list("abcdefghijklmnopqrstuvwxyz")) + "\n")
    # Characters only: every character of the learned vocabulary, alone and as ##c.
    chars = tmp_path / "chars.txt"
    chars.write_text("\n".join(t for t in vocab if len(t.removeprefix("##")) == 1
                               or t in SPECIAL_TOKENS) + "\n")
    learned_unk, learned_length = _rates(path, lines)
    tiny_unk, _ = _rates(str(tiny), lines)
    _, chars_length = _rates(str(chars), lines)
    assert learned_unk < 0.001 < 0.5 < tiny_unk
    assert learned_length < 0.5 * chars_length  # it learned pieces longer than characters


def test_cased_vocabulary_keeps_capitals(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("Hello World. Hello again, World!\n" * 20)
    vocab = build_vocab(VocabOptions(output=str(tmp_path / "cased.txt"),
                                     input=InputOptions(inputs=(str(text),)), vocab_size=40,
                                     lower_case=False))
    assert vocab[:5] == list(SPECIAL_TOKENS) and {"H", "W", "##o"} <= set(vocab)
    assert "h" not in vocab


def test_vocab_problems_are_reported_before_any_work(tmp_path):
    with pytest.raises(PipelineError, match="matches no file"):
        build_vocab(VocabOptions(output=str(tmp_path / "v.txt"),
                                 input=InputOptions(inputs=(str(tmp_path / "none*"),))))
    with pytest.raises(PipelineError, match="vocab_size=5"):
        build_vocab(VocabOptions(output=str(tmp_path / "v.txt"),
                                 input=InputOptions(inputs=(MOBY_DICK,)), vocab_size=5))
