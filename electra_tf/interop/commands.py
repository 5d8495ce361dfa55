"""The two conversions the CLI offers: import a foreign checkpoint, export one of ours.

``import_model`` reads a TF1 checkpoint, a Hugging Face model or a keras-hub preset, checks it
against the config (every problem at once, :class:`~electra_tf.interop.errors.ConvertError`) and
writes ``OUT/pretrained`` (+ ``OUT/ckpt-<step>`` with a generator). ``export_model`` writes a
pre-training model directory as Hugging Face models or a keras-hub preset.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from electra_tf.config import Config
from electra_tf.config_io import apply_overrides, load_config
from electra_tf.interop import errors, huggingface, keras_hub, model_io, tf1
from electra_tf.tokenizer import read_vocab

IMPORT_FORMATS = ("tf1", "hf", "keras_hub")
EXPORT_FORMATS = ("hf", "keras_hub")


def _user_sets(overrides: Sequence[str], key: str) -> bool:
    return any(item.split("=", 1)[0].strip() == key for item in overrides)


def _tf1_vocab(source: str) -> str:
    folder = source if os.path.isdir(source) else os.path.dirname(source)
    return os.path.join(folder, "vocab.txt")


def resolve_config(fmt: str, source: str, config: Optional[str], overrides: Sequence[str],
                   vocab: Optional[str], generator: Optional[str]) -> tuple[Config, str]:
    """The config of the imported model: ``--config``, then what the source says, then
    ``--set``; and the vocabulary file."""
    base = load_config(config)
    sets: list[str] = []
    info: dict = {}
    if fmt == "hf":
        sets, info = huggingface.read_source(source, generator)
        vocab = vocab or os.path.join(source, "vocab.txt")
    elif fmt == "keras_hub":
        sets, info = keras_hub.read_source(source)
        vocab = vocab or info["vocab"]
    else:
        vocab = vocab or _tf1_vocab(source)
    if not os.path.exists(vocab):
        raise errors.ConvertError([f"{vocab}: no vocabulary there; pass --vocab FILE"])
    if "lower_case" in info and not _user_sets(overrides, "data.lower_case"):
        sets.append(f"data.lower_case={info['lower_case']}")
    if fmt == "tf1" and not _user_sets(overrides, "model.vocab_size"):
        sets.append(f"model.vocab_size={len(read_vocab(vocab))}")
    positions = [int(s.split("=")[1]) for s in sets
                 if s.startswith("model.max_position_embeddings=")]
    if positions and positions[0] < base.data.seq_length:  # a source smaller than the config
        sets.append(f"data.seq_length={positions[0]}")
    return apply_overrides(base, sets + list(overrides)), vocab


def import_model(fmt: str, source: str, output_dir: str, config: Optional[str] = None,
                 overrides: Sequence[str] = (), vocab: Optional[str] = None,
                 generator: Optional[str] = None, with_optimizer: bool = False,
                 allow_unmapped: bool = False, echo=print) -> Optional[str]:
    """Converts ``source`` (format ``fmt``) into ``output_dir``.

    Returns:
      The checkpoint prefix written for ``electra_tf.pretrain --init_from``, or None (no
      generator in the source).

    Raises:
      ConvertError: the source does not fit the config, or is not what ``fmt`` says.
      ConfigError: ``--config``/``--set`` are invalid.
    """
    cfg, vocab = resolve_config(fmt, source, config, overrides, vocab, generator)
    slots, step = None, 0
    if fmt == "tf1":
        weights, slots, step = tf1.read_tf1(source, cfg, vocab, with_optimizer, allow_unmapped,
                                            echo)
    elif fmt == "hf":
        weights = huggingface.read_hf(source, generator, cfg, vocab, allow_unmapped, echo)
    else:
        weights = keras_hub.read_keras_hub(source, cfg, vocab, allow_unmapped, echo)
    return model_io.write_model(output_dir, cfg, vocab, weights, step, slots, echo)


def export_model(fmt: str, model_dir: str, output_dir: str, echo=print):
    """Writes the model of ``model_dir`` (a pre-training run or its ``pretrained/``) as
    Hugging Face models (``fmt="hf"``) or a keras-hub preset (``fmt="keras_hub"``)."""
    config, tokenizer, weights, model = model_io.read_model(model_dir, echo)
    if fmt == "hf":
        return huggingface.export_hf(config, tokenizer, weights, output_dir, echo)
    return keras_hub.export_keras_hub(config, tokenizer, weights, model.backbone, output_dir,
                                      echo)
