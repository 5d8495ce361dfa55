"""Import of google-research/electra TF1 checkpoints (``model.ckpt-N``, released or your own).

Names follow ``model/modeling.py`` and ``run_pretraining.py`` of the reference (docs/models.md
has the table). Sizes are read from the shapes and must equal the config: a released model is
described by its config (ELECTRA-Small: ``electra_small_released``, whose generator is as wide as
the discriminator), and a disagreement names the ``--set`` that would fix it. Adam moments
(``<name>/adam_m``, ``<name>/adam_v``) and ``global_step`` are imported with
``--with_optimizer``: our ``AdamWeightDecay`` is the reference's (no bias correction), so the
moments continue where the reference stopped.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from typing import Optional

import numpy as np
import tensorflow as tf

from electra_tf.config import Config
from electra_tf.interop import errors, model_io, names

SLOTS = ("adam_m", "adam_v")
GLOBAL_STEP = "global_step"


class CheckpointTensors(Mapping):
    """A TF1 checkpoint's tensors by name, read on access (a Large model with its moments is
    several GB)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._reader = tf.train.load_checkpoint(prefix)
        self._shapes = self._reader.get_variable_to_shape_map()

    def __getitem__(self, name):
        if name not in self._shapes:
            raise KeyError(name)
        return np.asarray(self._reader.get_tensor(name))

    def __iter__(self):
        return iter(sorted(self._shapes))

    def __len__(self):
        return len(self._shapes)

    def shape(self, name: str) -> list[int]:
        return list(self._shapes[name])


def checkpoint_prefix(source: str) -> str:
    """``model.ckpt-N`` as given, or a directory's latest checkpoint."""
    if tf.io.gfile.exists(source + ".index"):
        return source
    if tf.io.gfile.isdir(source):
        latest = tf.train.latest_checkpoint(source)
        if latest:
            return latest
        indexes = sorted(glob.glob(os.path.join(source, "*.index")),
                         key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
        if indexes:
            return indexes[-1][:-len(".index")]
    raise errors.ConvertError([f"{source}: no TF1 checkpoint (expected a prefix such as "
                               "DIR/model.ckpt-1000000, or a directory holding one)"])


def _layers(tensors: CheckpointTensors, scope: str) -> list[int]:
    pattern = re.compile(rf"^{scope}/encoder/layer_(\d+)/")
    return sorted({int(m.group(1)) for n in tensors for m in [pattern.match(n)] if m})


def size_problems(tensors: CheckpointTensors, config: Config) -> list[str]:
    """Sizes read from the shapes that differ from ``config``, each with the ``--set`` to use.

    Heads cannot be read from shapes; everything else that decides a shape is checked here.
    """
    m, gen = config.model, config.generator_model
    g_key = ("generator.hidden_size" if config.generator.hidden_size is not None
             else f"generator.hidden_fraction={config.generator.hidden_fraction}")
    checks = [  # (source name, axis, our size, config key, key for --set)
        ("electra/embeddings/word_embeddings", 0, m.vocab_size, "model.vocab_size"),
        ("electra/embeddings/word_embeddings", 1, m.embedding_size, "model.embedding_size"),
        ("electra/embeddings/position_embeddings", 0, m.max_position_embeddings,
         "model.max_position_embeddings"),
        ("electra/embeddings/token_type_embeddings", 0, m.type_vocab_size,
         "model.type_vocab_size"),
        ("electra/encoder/layer_0/attention/self/query/kernel", 1, m.hidden_size,
         "model.hidden_size"),
        ("electra/encoder/layer_0/intermediate/dense/kernel", 1, m.intermediate_size,
         "model.intermediate_size"),
        ("generator/encoder/layer_0/attention/self/query/kernel", 1, gen.hidden_size, g_key),
        ("generator/encoder/layer_0/intermediate/dense/kernel", 1, gen.intermediate_size,
         "generator.intermediate_size"),
    ]
    problems = []
    for name, axis, ours, key in checks:
        if name in tensors and tensors.shape(name)[axis] != ours:
            found = tensors.shape(name)[axis]
            fix = key.split("=")[0].replace("hidden_fraction", "hidden_size")
            hint = ("; the generator is as wide as the discriminator, as in the released "
                    "ELECTRA-Small (--config electra_small_released)"
                    if key.startswith("generator.hidden") and found == m.hidden_size else "")
            problems.append(f"{name}: size {found} in the checkpoint, the config gives {ours} "
                            f"({key}); --set {fix}={found} or another --config{hint}")
    for scope, label in (("electra", "discriminator"), ("generator", "generator")):
        layers = _layers(tensors, scope)
        if layers and len(layers) != m.num_layers:
            problems.append(f"{scope}/encoder: the checkpoint's {label} has {len(layers)} "
                            f"layers, the config {m.num_layers} (model.num_layers); --set "
                            f"model.num_layers={len(layers)} or another --config")
    return problems


def read_tf1(source: str, config: Config, vocab_path: str, with_optimizer: bool = False,
             allow_unmapped: bool = False, echo=print):
    """Reads and checks a TF1 checkpoint against ``config``.

    Returns:
      ``(weights, slots, step)``: our float32 arrays by our name; with ``with_optimizer``
      ``{our name: (adam_m, adam_v)}`` and ``global_step``, else None and ``global_step``.

    Raises:
      ConvertError: every problem found (sizes, missing, unmapped, shapes, dtypes, vocabulary).
    """
    prefix = checkpoint_prefix(source)
    tensors = CheckpointTensors(prefix)
    has_generator = any(n.startswith("generator/") for n in tensors)
    has_rtd = any(n.startswith("discriminator_predictions/") for n in tensors)
    params = names.parameters(config, generator=has_generator, rtd_head=has_rtd)
    problems = size_problems(tensors, config)
    model_io.check_vocab(vocab_path, tensors.shape("electra/embeddings/word_embeddings")[0]
                         if "electra/embeddings/word_embeddings" in tensors else None,
                         "electra/embeddings/word_embeddings", problems)
    weights, used = model_io.collect(params, tensors, lambda p: p.tf1, lambda p: p.dims,
                                     lambda p, v: v, "the checkpoint", problems)
    slots: Optional[dict] = None
    if with_optimizer:
        moments = {}
        for slot in SLOTS:
            found, slot_used = model_io.collect(
                params, tensors, lambda p, s=slot: f"{p.tf1}/{s}", lambda p: p.dims,
                lambda p, v: v, "the checkpoint", problems)
            moments[slot] = found
            used |= slot_used
        slots = {n: (moments["adam_m"][n], moments["adam_v"][n]) for n in weights
                 if n in moments["adam_m"] and n in moments["adam_v"]}
    ignored = {GLOBAL_STEP} | {n for n in tensors if n.rsplit("/", 1)[-1] in SLOTS}
    unmapped = [n for n in tensors if n not in used and n not in ignored]
    for name in unmapped:
        message = errors.unmapped(name, names.unmapped_reason(name, config))
        if allow_unmapped:
            echo(f"skipped {name} ({names.unmapped_reason(name, config)})")
        else:
            problems.append(message)
    step = int(tensors[GLOBAL_STEP]) if GLOBAL_STEP in tensors else 0
    if with_optimizer and GLOBAL_STEP not in tensors:
        problems.append(f"{GLOBAL_STEP}: missing (optimizer/iteration; --with_optimizer needs "
                        "the reference's step)")
    model_io.raise_problems(problems, prefix)
    echo(f"read {prefix}: {len(weights)} variables, step {step}"
         + (f", {2 * len(slots)} Adam moments" if slots is not None else ""))
    return weights, slots, step
