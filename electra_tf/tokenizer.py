"""In-graph WordPiece tokenizer that reproduces BERT's reference ``FullTokenizer``.

tensorflow-text's tokenizers differ from the reference on many inputs: their lower-casing is
NFKC case folding (ß → ss, ﬁ → fi, ² → 2, full-width → ASCII) and their word-length cap counts
bytes, not characters. We therefore normalize in the graph exactly as the reference's
``BasicTokenizer`` does and then run tensorflow-text's ``BertTokenizer`` with its own
normalization switched off:

1. drop NUL, U+FFFD and every control (Cc) and format (Cf) character (``_clean_text``); tab,
   newline, carriage return and Unicode spaces become a plain space first;
2. lower-case (``str.lower``) — uncased vocabularies only;
3. NFD, then drop combining marks (``_run_strip_accents``) — uncased vocabularies only;
4. split on whitespace, punctuation and CJK characters; greedy longest-match WordPiece;
   a word of more than 200 characters becomes ``[UNK]``.

Everything is TensorFlow ops, so the same code runs in Beam workers, in ``tf.data`` and inside
an exported SavedModel that takes raw text.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Optional

import tensorflow as tf
import tensorflow_text as tf_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_CHARS_PER_WORD = 200  # BERT's WordpieceTokenizer.max_input_chars_per_word
BERT_UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"

# Whitespace per the reference (\t, \n, \r and category Zs; Zl/Zp split words there too), other
# than the plain space itself: matching every space made this pass 8× slower than the others.
# The Z category has not changed since Unicode 4.1.
_WHITESPACE = (r"[\t\n\r\x{00A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}"
               r"\x{205F}\x{3000}]")
# Controls and format characters plus U+FFFD, removed by _clean_text (private-use characters
# are kept: the reference's _is_control looks at Cc and Cf only).
_REMOVED = r"[\p{Cc}\p{Cf}\x{FFFD}]"
# Word boundaries of the reference BasicTokenizer: whitespace splits and disappears; ASCII
# symbols, Unicode punctuation and CJK ideographs each become a word of their own.
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|\p{P}"
_CJK = (r"[\x{4E00}-\x{9FFF}]|[\x{3400}-\x{4DBF}]|[\x{20000}-\x{2A6DF}]|"
        r"[\x{2A700}-\x{2B73F}]|[\x{2B740}-\x{2B81F}]|[\x{2B820}-\x{2CEAF}]|"
        r"[\x{F900}-\x{FAFF}]|[\x{2F800}-\x{2FA1F}]")
_ISOLATE = "(" + _PUNCTUATION + "|" + _CJK + ")"
_COMBINING_MARKS = r"\p{Mn}"


class TokenizerError(ValueError):
    """The vocabulary or the tokenizer settings are unusable or do not match."""


def default_vocab_path() -> str:
    """Path of the packaged BERT uncased WordPiece vocabulary (30,522 tokens)."""
    return str(resources.files("electra_tf") / "resources" / "vocab" / "bert_uncased_vocab.txt")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_vocab(path: str) -> list[str]:
    """Reads a one-token-per-line vocabulary; refuses missing files and duplicate tokens."""
    if not tf.io.gfile.exists(path):
        raise TokenizerError(f"vocabulary file {path!r} does not exist")
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"vocabulary file {path!r} is not UTF-8 ({e})") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise TokenizerError(f"vocabulary file {path!r} is empty")
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in seen:
            raise TokenizerError(
                f"vocabulary file {path!r}: token {token!r} appears on lines "
                f"{seen[token] + 1} and {i + 1}")
        seen[token] = i
    return tokens


def normalize(texts: tf.Tensor, lower_case: bool = True) -> tf.Tensor:
    """Applies the reference BasicTokenizer's cleaning (and lower-casing) to a string tensor."""
    texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
    texts = tf.strings.regex_replace(texts, _REMOVED, "")
    if lower_case:
        texts = tf.strings.lower(texts, encoding="utf-8")
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, _COMBINING_MARKS, "")
    return texts


def split_words(texts, lower_case: bool = True, unknown_token: str = "[UNK]") -> tf.RaggedTensor:
    """Strings [batch] → the words WordPiece sees, ragged tf.string [batch, (words)].

    Normalizes (:func:`normalize`), splits as the reference BasicTokenizer, and replaces words of
    more than 200 characters by ``unknown_token``. The vocabulary builder counts these words.
    """
    texts = tf.convert_to_tensor(texts, tf.string)
    # Spaces around every punctuation/CJK character, then a plain split on spaces (the only
    # whitespace left after normalize): the same words as a regex split that keeps those
    # characters (tensorflow-text's BasicTokenizer), in half the time.
    spaced = tf.strings.regex_replace(normalize(texts, lower_case), _ISOLATE, r" \1 ")
    words = tf.strings.split(spaced, sep=None)
    # A literal "[UNK]" in the input never gets here whole: "[" and "]" split off above.
    return tf.ragged.map_flat_values(lambda w: _cap_word_length(w, unknown_token), words)


def _cap_word_length(words: tf.Tensor, unknown_token: str) -> tf.Tensor:
    """Replaces words of more than 200 characters by ``unknown_token``.

    Only words of more than 200 *bytes* can be too long, and they are rare: the characters are
    counted, and the strings copied, only when one exists.
    """
    def cap():
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        return tf.where(too_long, unknown_token, words)

    return tf.cond(tf.reduce_any(tf.strings.length(words) > MAX_CHARS_PER_WORD), cap,
                   lambda: tf.identity(words))


class Tokenizer(tf.Module):
    """WordPiece tokenizer with the reference BERT semantics, usable in any TF graph.

    Args:
      vocab_path: vocabulary file (one token per line); None for the packaged BERT uncased vocab.
      lower_case: lower-case and strip accents (uncased vocabularies).
      fast: use tensorflow-text's ``FastWordpieceTokenizer`` (same ids, about 4× faster on the
        packaged corpus; preprocessing uses it). Exports keep the default, whose vocabulary is
        a lookup-table asset rather than a constant baked into the graph.

    Example:
      >>> tok = Tokenizer()
      >>> tok.tokenize(tf.constant(["Hello, world!"])).to_list()
      [[7592, 1010, 2088, 999]]
      >>> ex = tok.encode(tf.constant(["Hello"]), seq_length=6)
      >>> ex["token_ids"].numpy().tolist(), ex["padding_mask"].numpy().tolist()
      ([[101, 7592, 102, 0, 0, 0]], [[1, 1, 1, 0, 0, 0]])
    """

    def __init__(self, vocab_path: Optional[str] = None, lower_case: bool = True,
                 fast: bool = False):
        super().__init__(name="tokenizer")
        self.vocab_path = vocab_path or default_vocab_path()
        self.lower_case = lower_case
        self.vocab = read_vocab(self.vocab_path)
        self.vocab_sha256 = file_sha256(self.vocab_path)
        index = {t: i for i, t in enumerate(self.vocab)}
        missing = [t for t in SPECIAL_TOKENS if t not in index]
        if missing:
            raise TokenizerError(
                f"vocabulary {self.vocab_path!r} lacks the special tokens {missing}; "
                f"every vocabulary needs {list(SPECIAL_TOKENS)}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            index[t] for t in SPECIAL_TOKENS)
        # Keep the table as a tracked resource so SavedModels carry the vocabulary as an asset.
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocab_path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            default_value=-1)
        # Words are capped in characters before WordPiece sees them, so its byte cap never bites.
        self._wordpiece = tf_text.WordpieceTokenizer(
            self._table, token_out_type=tf.int64, unknown_token="[UNK]",
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD)
        self._fast_wordpiece = tf_text.FastWordpieceTokenizer(
            self.vocab, token_out_type=tf.int64, unknown_token="[UNK]",
            no_pretokenization=True, max_bytes_per_word=4 * MAX_CHARS_PER_WORD) if fast else None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def settings(self) -> dict:
        """What must agree between data, checkpoints and exports made with this tokenizer."""
        return {
            "vocab_sha256": self.vocab_sha256,
            "vocab_size": self.vocab_size,
            "lower_case": self.lower_case,
            "strip_accents": self.lower_case,
            "max_chars_per_word": MAX_CHARS_PER_WORD,
            "special_tokens": dict(zip(SPECIAL_TOKENS, (self.pad_id, self.unk_id, self.cls_id,
                                                        self.sep_id, self.mask_id))),
        }

    def tokenize(self, texts) -> tf.RaggedTensor:
        """Strings of shape [batch] → int32 WordPiece ids, ragged [batch, (tokens)].

        No special tokens are added. Words longer than 200 characters become ``[UNK]`` as in
        the reference.
        """
        words = split_words(texts, self.lower_case, self.vocab[self.unk_id])
        if self._fast_wordpiece is not None:
            pieces = words.with_flat_values(self._fast_wordpiece.tokenize(words.flat_values))
        else:
            pieces = self._wordpiece.tokenize(words)  # [batch, words, pieces]
        return tf.cast(pieces.merge_dims(1, 2), tf.int32)

    def encode(self, texts, texts_b=None, seq_length: int = 128) -> dict[str, tf.Tensor]:
        """Builds model inputs ``[CLS] a [SEP] (b [SEP])`` padded to ``seq_length``.

        When a pair is too long, tokens are removed from the end of the longer segment first
        (as BERT's ``_truncate_seq_pair``).

        Returns:
          ``token_ids``, ``segment_ids``, ``padding_mask``: int32 tensors [batch, seq_length].
        """
        segments = [self.tokenize(texts)]
        if texts_b is not None:
            segments.append(self.tokenize(texts_b))
        budget = seq_length - 1 - len(segments)
        if budget < 0:
            raise TokenizerError(f"seq_length={seq_length} leaves no room for any token")
        if len(segments) == 1:
            segments = [segments[0][:, :budget]]
        else:  # ShrinkLongestTrimmer fails to trace for a single segment, so only pairs use it.
            segments = tf_text.ShrinkLongestTrimmer(budget, axis=-1).trim(segments)
        token_ids, segment_ids = tf_text.combine_segments(
            segments, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
        token_ids, padding_mask = tf_text.pad_model_inputs(token_ids, seq_length, self.pad_id)
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, seq_length, 0)
        return {
            "token_ids": tf.cast(token_ids, tf.int32),
            "segment_ids": tf.cast(segment_ids, tf.int32),
            "padding_mask": tf.cast(padding_mask, tf.int32),
        }

    def detokenize(self, token_ids) -> tf.Tensor:
        """Ids (dense with padding, or ragged) → text, joining ``##`` pieces; drops [PAD]."""
        if not isinstance(token_ids, tf.RaggedTensor):
            token_ids = tf.RaggedTensor.from_tensor(
                tf.convert_to_tensor(token_ids), padding=self.pad_id)
        words = self._wordpiece.detokenize(tf.cast(token_ids, tf.int64))
        return tf.strings.reduce_join(words, axis=-1, separator=" ")

    def check_settings(self, other: dict, where: str) -> None:
        """Raises TokenizerError naming each setting of ``other`` that differs from ours."""
        mine = self.settings()
        diffs = [f"{k}: {where} has {other.get(k)!r}, this tokenizer has {mine[k]!r}"
                 for k in mine if k in other and other[k] != mine[k]]
        if diffs:
            raise TokenizerError(f"tokenizer settings of {where} do not match: " + "; ".join(diffs))


def tokenizer_from_config(data_config) -> Tokenizer:
    """Builds the tokenizer a :class:`~electra_tf.config.DataConfig` describes (the packaged
    BERT uncased vocabulary when ``data.vocab_path`` is empty)."""
    if data_config.vocab_path and not tf.io.gfile.exists(data_config.vocab_path):
        raise TokenizerError(f"data.vocab_path={data_config.vocab_path!r} does not exist")
    return Tokenizer(data_config.vocab_path or None, lower_case=data_config.lower_case)
