"""Generate tests/data/tokenizer_parity.json (golden WordPiece ids).

The golden ids come from the reference ``FullTokenizer`` in
google-research/bert, used with ``do_lower_case=True`` and the uncased vocab
shipped in this package.  The reference code is NOT vendored here; to
regenerate the fixture:

  1. Get the google-research/bert repository (e.g. ``git clone
     https://github.com/google-research/bert``) and copy its
     ``tokenization.py`` into a scratch directory outside this repo, e.g.
     ``/tmp/bertref/tokenization.py``.
  2. Make it importable without TensorFlow 1.x: comment out
     ``import tensorflow as tf`` and replace ``tf.gfile.GFile(vocab_file, "r")``
     with ``open(vocab_file, "r", encoding="utf-8")``.  Leave everything else
     unchanged.  It needs the ``six`` package.
  3. From the repository root run::

       python tests/data/make_tokenizer_parity.py --bert_dir /tmp/bertref \
           --bert_commit <sha of the bert checkout>

The output is written with ``ensure_ascii=True`` so control and invisible
characters stay readable as escapes.  Case order is fixed by CASES below.
"""

import argparse
import hashlib
import json
import os
import sys
import unicodedata

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
DEFAULT_VOCAB = os.path.join(
    _ROOT, "electra_tf", "resources", "vocab", "bert_uncased_vocab.txt")
DEFAULT_OUT = os.path.join(_HERE, "tokenizer_parity.json")

CASES = [
    # Plain English, casing, numbers, contractions.
    "The quick brown fox jumps over the lazy dog.",
    "ELECTRA Pre-Training of Text Encoders as Discriminators",
    "Pi is 3.14159 and a million is 1,000,000.",
    "I don't think I'm ready, aren't you?",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "xqzvbnmwrtp glorpflux",
    # Accents and casing edge cases.
    "café naïve Ångström résumé İstanbul",
    "Turkish i: ı I İ i; dotless ıi and dotted İI",
    "e\u0301cole and cafe\u0301 (pre-decomposed)",
    "Straße STRASSE groß ẞ",
    "Greek: ΟΔΟΣ Σίσυφος ΣΑΣ",
    "Sigma context: Σ ΑΣ. ΑΣ.ΒΑ ΑΣ'ΒΑ ΑΣ-ΒΑ ΑΣ1 ΑΣ\u0301 ΑΣ\u200bΒ",
    "Compatibility ideographs: \uf900\uf901 \U0002f800 mixed\uf902x",
    "Literal specials: [UNK] [CLS] [SEP] [MASK] [unused0]",
    "Ligatures: ﬁne ﬂow œuvre æther Æsop",
    "Superscripts x² y³ and subscripts H₂O",
    "Full-width: ＡＢＣ１２３！ ｈｅｌｌｏ",
    "Roman Ⅻ circled ① ② ⑩",
    # Scripts.
    "中文分词测试，你好世界。",
    "日本語のテキストとカタカナ、ひらがな混在です",
    "한국어 텍스트 안녕하세요",
    "Привет, мир! Ёлка и ёж.",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีครับ ภาษาไทย",
    # Punctuation and symbols.
    "Wait!!!??? ... -- \"quoted\" 'single' «guillemets»",
    "It costs $5,000.00 (approx. €4.600,00) or £3k.",
    "Mail me: first.last+tag@example.co.uk",
    "Visit https://example.com/path?q=1&r=two#frag now",
    "Ellipsis… em—dash en–dash ‒ figure ― bar",
    "Math: ∑ x_i ≥ 0, ∞ ≠ 1, √2 ≈ 1.414, ∀ε∃δ",
    "Emoji 😀 thumbs 👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flag 🇺🇸",
    # Control characters and replacement char.
    "nul\x00byte bell\x07 esc\x1b[0m",
    "bad\ufffdchar and \ufffd alone",
    "vtab\x0bform\x0cfeed nel\x85line",
    "tab\there\nnewline\r\ncrlf\rcr",
    # Unicode spaces / separators.
    "non\u00a0breaking\u00a0space",
    "line\u2028sep para\u2029sep ideo\u3000space",
    "en\u2002em\u2003thin\u2009hair\u200anarrow\u202fmath\u205f",
    # Zero-width / format characters.
    "zero\u200bwidth zw\u200cnj zw\u200dj bom\ufeffx word\u2060joiner",
    "soft\u00adhyphen co\u00adoperate",
    "\ufeffleading BOM",
    "rtl\u200emark\u200f and \u202aembed\u202c",
    # Word-length boundaries (max_input_chars_per_word = 100).
    "a" * 100,
    "a" * 101,
    "\u00e9" * 60,
    "\u0436" * 60,
    "ab" * 100,
    "short " + "b" * 150 + " tail",
    "e\u0301" * 60,
    # The reference WordpieceTokenizer's real limit is 200 chars per word,
    # counted after lower-casing / accent stripping / punctuation splitting.
    "a" * 200,
    "a" * 201,
    "x " + "\u0436" * 200 + " y " + "\u0436" * 201,
    "\u00e9" * 201,
    "e\u0301" * 150,
    "(" + "c" * 201 + ")," + "d" * 199 + "!",
    # Degenerate inputs.
    "",
    " ",
    " \t\n\r \u00a0\u3000 ",
    "many     spaces      between        words",
    "\u200b\u200b",
    "private\ue000use",
]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--bert_dir", required=True,
                 help="directory containing patched tokenization.py")
  p.add_argument("--bert_commit", default="unknown",
                 help="commit sha of the google-research/bert checkout")
  p.add_argument("--vocab", default=DEFAULT_VOCAB)
  p.add_argument("--out", default=DEFAULT_OUT)
  args = p.parse_args(argv)

  sys.path.insert(0, os.path.abspath(args.bert_dir))
  import tokenization  # pylint: disable=g-import-not-at-top

  with open(args.vocab, "rb") as f:
    vocab_sha = hashlib.sha256(f.read()).hexdigest()
  tok = tokenization.FullTokenizer(vocab_file=args.vocab, do_lower_case=True)

  cases = []
  for text in CASES:
    tokens = tok.tokenize(text)
    cases.append({"text": text, "ids": tok.convert_tokens_to_ids(tokens),
                  "tokens": tokens})

  doc = {
      "generated_with": (
          "google-research/bert tokenization.py at commit %s, "
          "FullTokenizer(do_lower_case=True), vocab sha256 %s, "
          "Python %d.%d unicodedata %s"
          % (args.bert_commit, vocab_sha, sys.version_info[0],
             sys.version_info[1], unicodedata.unidata_version)),
      "cases": cases,
  }
  # One case per line keeps diffs readable.
  lines = ["{", '  "generated_with": %s,' % json.dumps(doc["generated_with"]),
           '  "cases": [']
  body = [
      "    " + json.dumps(c, ensure_ascii=True, separators=(", ", ": "))
      for c in cases]
  lines.append(",\n".join(body))
  lines += ["  ]", "}"]
  text = "\n".join(lines) + "\n"
  assert json.loads(text) == doc
  with open(args.out, "w", encoding="ascii") as f:
    f.write(text)
  print("wrote %d cases to %s" % (len(cases), args.out))


if __name__ == "__main__":
  main()
