"""Learn a WordPiece vocabulary from raw text, JSON Lines or a TFDS dataset (Apache Beam).

Usage::

    python -m pipelines.build_vocab --input 'corpus/*.txt.gz' --output vocab.txt \\
        --vocab_size 8000 [--lower_case | --no-lower_case] [--max_input_words 5000000] \\
        [Beam pipeline options, as for pipelines.build_pretraining_data]

Words are counted in Beam, so counting scales like the data pipeline: each chunk of text is
normalized and split exactly as ``electra_tf.tokenizer.Tokenizer`` does before WordPiece, word
counts are summed per word across workers, and the ``--max_input_words`` most frequent words go
to tensorflow-text's learner (``wordpiece_tokenizer_learner_lib.learn``, the algorithm behind
``bert_vocab_from_dataset``), which runs on one worker and writes the file.

The vocabulary starts with ``[PAD] [UNK] [CLS] [SEP] [MASK]`` at ids 0–4, then every character
kept by the learner (alone and as ``##`` continuation), then the learned pieces by frequency.
Use it with ``--set data.vocab_path=FILE`` (and ``data.lower_case`` as learned) in every CLI, and
``--vocab FILE`` in ``pipelines.build_pretraining_data``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from electra_tf import tokenizer as tokenizer_lib
from pipelines.inputs import (PipelineError, ReadInputs, add_input_arguments, input_options,
                              resolve_inputs)
from pipelines.options import InputOptions, VocabOptions
from pipelines.reading import TextChunk

logger = logging.getLogger(__name__)
# What split_words puts in place of words too long for WordPiece; the splitter never produces
# it otherwise (it splits "[" and "]" off every word).
_OVERLONG = "[UNK]"


class _CountWords(beam.DoFn):
    """TextChunk → (word, count) for each distinct word of the chunk (tokenizer's splitting)."""

    def __init__(self, lower_case: bool):
        self.lower_case = lower_case

    def setup(self):
        import tensorflow as tf

        self._split = tf.function(
            lambda texts: tokenizer_lib.split_words(texts, self.lower_case, _OVERLONG),
            autograph=False, input_signature=[tf.TensorSpec([None], tf.string)])

    def process(self, chunk: TextChunk) -> Iterator[tuple[str, int]]:
        if not chunk.lines:
            return
        words = self._split(chunk.lines).flat_values.numpy()
        unique, counts = np.unique(words, return_counts=True)
        for word, count in zip(unique.tolist(), counts.tolist()):
            text = word.decode("utf-8")
            if text != _OVERLONG:  # [UNK] to the tokenizer: nothing to learn from it
                yield text, count


def learn_vocab(word_counts: list[tuple[str, int]], vocab_size: int) -> list[str]:
    """tensorflow-text's WordPiece learner with our reserved tokens first."""
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    if not word_counts:
        raise PipelineError("the input holds no words to learn a vocabulary from")
    # Sorted input: the learner's output then does not depend on the order counts arrived in.
    word_counts = sorted(word_counts, key=lambda wc: (-wc[1], wc[0]))
    return learner.learn(word_counts, vocab_size, list(tokenizer_lib.SPECIAL_TOKENS),
                         max_input_tokens=-1)


def _learn_and_write(top: list[tuple[str, int]], options: VocabOptions) -> int:
    vocab = learn_vocab(top, options.vocab_size)
    with FileSystems.create(options.output) as f:
        f.write(("\n".join(vocab) + "\n").encode("utf-8"))
    return len(vocab)


def build_vocab(options: VocabOptions, beam_args: Sequence[str] = ()) -> list[str]:
    """Runs the pipeline; returns the vocabulary written to ``options.output``.

    Raises:
      PipelineError: before any work, for an input without files or a bad option.
    """
    if options.vocab_size <= len(tokenizer_lib.SPECIAL_TOKENS):
        raise PipelineError(f"--vocab_size={options.vocab_size} must exceed the "
                            f"{len(tokenizer_lib.SPECIAL_TOKENS)} reserved tokens")
    work_items = resolve_inputs(options.input)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        chunks, _ = p | "Read" >> ReadInputs(options.input, work_items)
        _ = (chunks
             | "CountChunkWords" >> beam.ParDo(_CountWords(options.lower_case))
             | "SumPerWord" >> beam.CombinePerKey(sum)
             | "TopWords" >> beam.combiners.Top.Of(options.max_input_words,
                                                   key=lambda wc: (wc[1], wc[0]))
             | "LearnAndWrite" >> beam.Map(_learn_and_write, options))
    return tokenizer_lib.read_vocab(options.output)


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    d = VocabOptions(output="", input=InputOptions())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Any other flag is a Beam pipeline option (--runner, --direct_num_workers, ...).")
    add_input_arguments(parser)
    parser.add_argument("--output", required=True, help="vocabulary file to write")
    parser.add_argument("--vocab_size", type=int, default=d.vocab_size)
    parser.add_argument("--lower_case", action=argparse.BooleanOptionalAction,
                        default=d.lower_case)
    parser.add_argument("--max_input_words", type=int, default=d.max_input_words)
    args, beam_args = parser.parse_known_args(argv)
    options = VocabOptions(output=args.output, input=input_options(args),
                           vocab_size=args.vocab_size, lower_case=args.lower_case,
                           max_input_words=args.max_input_words)
    try:
        vocab = build_vocab(options, beam_args)
    except PipelineError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {len(vocab)} tokens to {options.output} "
          f"({'uncased' if options.lower_case else 'cased'}; use data.lower_case="
          f"{str(options.lower_case).lower()})")


if __name__ == "__main__":
    main()
