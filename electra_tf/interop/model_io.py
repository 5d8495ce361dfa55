"""Our side of every conversion: numpy arrays keyed by our names in and out of a model directory.

Import writes ``OUT/pretrained/`` (``save_pretrained``: ``electra_tf.finetune --init OUT``) and,
with a generator, ``OUT/ckpt-<step>`` + ``OUT/checkpoint`` holding the ``model/…`` objects of
``training.checkpointing.model_state`` (``electra_tf.pretrain --init_from OUT``), optionally with
the optimizer's step and Adam moments under ``optimizer/…``. Export reads ``MODEL_DIR/pretrained``
and the ``rtd_head`` of ``MODEL_DIR``'s latest ``ckpt-*``. Both go through one pretrainer built
from the config, so the variable paths (and the checkpoint keys they give) are the training
loop's own.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from electra_tf.config import Config
from electra_tf.config_io import apply_overrides
from electra_tf.interop import errors
from electra_tf.interop.names import Dim, Param
from electra_tf.models import pretrained
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.tokenizer import Tokenizer, read_vocab
from electra_tf.training.checkpointing import (CHECKPOINT_PREFIX, model_state,
                                               optimizer_state)
from electra_tf.training.optimization import build_optimizer

Echo = Callable[[str], None]


def model_variables(model) -> dict[str, tf.Variable]:
    """``{our name: variable}``: trainable variables by path without the model's own name."""
    return {v.path.split("/", 1)[1]: v for v in model.trainable_variables}


def collect(params: list[Param], source: dict, name_of: Callable[[Param], Optional[str]],
            source_dims: Callable[[Param], tuple[Dim, ...]],
            to_ours: Callable[[Param, np.ndarray], np.ndarray], where: str,
            problems: list[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """Looks up every param in ``source`` ({name: array}), checking presence, dtype, shape.

    Returns:
      ``(weights, used)``: float32 arrays by our name, and the source names consumed.
      Problems are appended to ``problems``.
    """
    weights, used = {}, set()
    for param in params:
        name = name_of(param)
        if name is None:
            continue
        if name not in source:
            problems.append(errors.missing(name, param))
            continue
        used.add(name)
        value = source[name]
        if not np.issubdtype(value.dtype, np.floating):
            problems.append(errors.not_float(name, str(value.dtype), param))
            continue
        problem = errors.shape_problem(name, value.shape, source_dims(param), param, where)
        if problem:
            problems.append(problem)
            continue
        weights[param.ours] = np.asarray(to_ours(param, value), dtype=np.float32)
    return weights, used


def check_vocab(vocab_path: str, rows: Optional[int], name: str, problems: list[str]) -> None:
    """The vocabulary must have one line per row of the word-embedding table."""
    if rows is None:
        return
    lines = len(read_vocab(vocab_path))
    if lines != rows:
        problems.append(f"{vocab_path}: {lines} lines, but {name} has {rows} rows "
                        "(model.vocab_size); the vocabulary does not belong to this model")


def write_model(output_dir: str, config: Config, vocab_path: str,
                weights: dict[str, np.ndarray], step: int = 0,
                slots: Optional[dict[str, tuple[np.ndarray, np.ndarray]]] = None,
                echo: Echo = print) -> Optional[str]:
    """Writes ``OUT/pretrained/`` and, when ``weights`` hold a generator, ``OUT/ckpt-<step>``.

    Args:
      output_dir: OUT.
      config: the model's config (its ``data.vocab_path`` is pointed at the copied vocabulary).
      vocab_path: the source vocabulary.
      weights: float32 arrays by our name; the discriminator encoder is required, generator,
        MLM head and ``rtd_head`` are optional.
      step: the checkpoint number and, with ``slots``, ``optimizer/iteration``.
      slots: ``{our name: (m, v)}`` Adam moments to write under ``optimizer/…``.

    Returns:
      The checkpoint prefix, or None when no generator was given (no checkpoint).
    """
    target = os.path.join(output_dir, pretrained.SUBDIRECTORY)
    config = apply_overrides(config, [f"data.vocab_path={os.path.abspath(target)}/vocab.txt"])
    tokenizer = Tokenizer(vocab_path, lower_case=config.data.lower_case)
    model = build_pretrainer(config, tokenizer)
    variables = model_variables(model)
    unknown = sorted(set(weights) - set(variables))
    if unknown:  # a converter bug, not a user error
        raise RuntimeError(f"no such variables in the model: {unknown}")
    for name, value in weights.items():
        variables[name].assign(value)
    with_generator = any(name.startswith("generator/") for name in weights)
    pretrained.save_pretrained(target, config, tokenizer, model.backbone,
                               model.masked_language_model() if with_generator else None)
    echo(f"wrote {target} (electra_tf.finetune --init {output_dir})")
    if not with_generator:
        echo("no generator in the source: only the discriminator was imported, no checkpoint "
             "for electra_tf.pretrain --init_from")
        return None
    if not any(name.startswith("rtd_head/") for name in weights):
        echo("note: the source has no replaced-token head; rtd_head in the checkpoint is "
             f"freshly initialized (train.seed={config.train.seed})")
    objects = {"model": model_state(model)}
    if slots is not None:
        optimizer = build_optimizer(config.optimizer, config.train.num_steps, model,
                                    mixed_precision=config.train.mixed_precision)
        by_name = optimizer_state(optimizer)
        for name, (m, v) in slots.items():
            base = variables[name].path.replace("/", "_")
            by_name[f"{base}_m"].assign(m)
            by_name[f"{base}_v"].assign(v)
        optimizer.iterations.assign(step)
        objects["optimizer"] = by_name
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**objects), output_dir,
                                         max_to_keep=1, checkpoint_name=CHECKPOINT_PREFIX)
    prefix = manager.save(checkpoint_number=step)
    echo(f"wrote {prefix} (electra_tf.pretrain --model_dir NEW --init_from {output_dir}"
         + (" --init_optimizer" if slots is not None else "") + ")")
    return prefix


def read_model(model_dir: str, echo: Echo = print):
    """What :func:`write_model` (or pre-training) wrote: ``(config, tokenizer, weights, model)``.

    ``weights`` holds the discriminator encoder, the generator and MLM head when
    ``generator.weights.h5`` exists, and ``rtd_head`` when ``model_dir`` has a ``ckpt-*``.
    """
    directory = pretrained.resolve_pretrained_dir(model_dir)
    config, tokenizer, _ = pretrained.load_pretrained(directory)  # checks the tokenizer
    model = build_pretrainer(config, tokenizer)
    model.backbone.load_weights(os.path.join(directory, pretrained.DISCRIMINATOR_WEIGHTS))
    names = [n for n in model_variables(model)
             if n.startswith(("embeddings/", "discriminator/"))]
    if os.path.exists(os.path.join(directory, pretrained.GENERATOR_WEIGHTS)):
        model.masked_language_model().load_weights(
            os.path.join(directory, pretrained.GENERATOR_WEIGHTS))
        names += [n for n in model_variables(model) if n.startswith(("generator/", "mlm_head/"))]
    latest = None
    for candidate in (model_dir, os.path.dirname(os.path.abspath(directory))):
        latest = latest or tf.train.latest_checkpoint(candidate)
    if latest and model.rtd_head is not None:
        tf.train.Checkpoint(model={"rtd_head": model.rtd_head}).restore(latest) \
            .expect_partial().assert_existing_objects_matched()
        names += [n for n in model_variables(model) if n.startswith("rtd_head/")]
        echo(f"replaced-token head from {latest}")
    variables = model_variables(model)
    weights = {n: variables[n].numpy() for n in dict.fromkeys(names)}
    return config, tokenizer, weights, model


def raise_problems(problems: list[str], source: str) -> None:
    """Raises :class:`ConvertError` when ``problems`` is not empty."""
    if problems:
        raise errors.ConvertError(problems, source)
