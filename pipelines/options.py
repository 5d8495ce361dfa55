"""The options of both pipelines, one name per concept, each named as its command-line flag.

:class:`InputOptions` (where the text comes from and how it is cut into chunks) is shared by
both pipelines; :class:`BuildOptions` and :class:`VocabOptions` hold it with what each pipeline
makes of the text. The Beam transforms take these objects as the user gave them, so an option
has one name from the flag to the code that reads it: ``vocab`` (``--vocab``) and
``max_seq_length`` (``--max_seq_length``, written to ``metadata.json`` as ``seq_length``, the
pre-training config's ``data.seq_length``).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """Where the text comes from, and how it is read (``pipelines/reading.py``).

    Attributes:
      inputs: globs of text (``.txt`` or any name; ``.gz``/``.bz2`` decompressed) or JSON Lines
        (``.jsonl``/``.ndjson``) files. Exclusive with ``tfds``.
      tfds: ``name[/config][:split]`` of a prepared TFDS dataset (split default ``train``).
      tfds_data_dir: its data directory (TFDS's default when empty).
      tfds_text_feature: the text feature of each TFDS example (one document each).
      max_line_bytes: longer lines are cut at whitespace (a 1 GB line costs 1 MiB of memory).
      chunk_bytes: about this much text makes one unit of work; a longer document is cut into
        parts at line boundaries, each packed on its own (so it changes the examples).
      json_field: text field of JSON Lines records.
      max_json_bytes: longer JSON Lines records are skipped (they cannot be parsed in pieces).
    """

    inputs: tuple[str, ...] = ()
    tfds: str = ""
    tfds_data_dir: str = ""
    tfds_text_feature: str = "text"
    max_line_bytes: int = 1 << 20
    chunk_bytes: int = 1 << 20
    json_field: str = "text"
    max_json_bytes: int = 64 << 20


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Everything ``pipelines.build_pretraining_data``'s output depends on (stored in
    ``metadata.json``).

    Attributes:
      output_dir: where the shards, ``metadata.json`` and ``COMPLETED`` go (any Beam/TF file
        system path).
      input: the text to read.
      vocab: WordPiece vocabulary; empty for the packaged BERT uncased one, wherever a worker
        installed the package.
      lower_case: lower-case and strip accents (match the vocabulary).
      max_seq_length: tokens per example (the pre-training config's ``data.seq_length``).
      num_shards: train shards; 0 picks the fewest that keep shards under 256 MB.
      validation_fraction: share of documents held out as the ``validation`` split.
      seed: keys the packing, the held-out documents and the shard order (with the source
        name and document index).
      format: ``electra_tf`` (``token_ids``/``segment_ids``/``padding_mask``) or ``original``
        (google-research/electra's ``input_ids``/``segment_ids``/``input_mask``).
      compression: ``""`` or ``"GZIP"``.
      max_unk_fraction: document parts with a larger share of ``[UNK]`` tokens are skipped.
      overwrite: replace the outputs of a completed earlier run in ``output_dir``.
    """

    output_dir: str
    input: InputOptions
    vocab: str = ""
    lower_case: bool = True
    max_seq_length: int = 128
    num_shards: int = 0
    validation_fraction: float = 0.01
    seed: int = 0
    format: str = "electra_tf"
    compression: str = ""
    max_unk_fraction: float = 0.5
    overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class VocabOptions:
    """What ``pipelines.build_vocab`` learns.

    Attributes:
      output: the vocabulary file to write (one token per line).
      input: the text to learn from.
      vocab_size: the largest vocabulary acceptable; the learner returns one within 5% below.
      lower_case: lower-case and strip accents first (an uncased vocabulary).
      max_input_words: only this many most frequent words are given to the learner (it is
        single-threaded Python: ~5 s per 10k distinct words on one core).
    """

    output: str
    input: InputOptions
    vocab_size: int = 30522
    lower_case: bool = True
    max_input_words: int = 1_000_000
