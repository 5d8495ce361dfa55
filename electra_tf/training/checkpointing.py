"""Pre-training checkpoints: object names, the config changes a resume allows, warm starts.

``tf.train.CheckpointManager`` writes ``ckpt-<step>.index`` / ``.data-*`` / ``checkpoint`` into
``model_dir`` (:mod:`electra_tf.training.loop`); the objects in it are :data:`CHECKPOINT_KEYS`.
Their names come from attribute names (:func:`model_state`), optimizer variable names
(:func:`optimizer_state`) and variable paths, and must not change: old checkpoints resume and
checkpoint conversion relies on them (``tests/test_checkpoint_fixture.py``).
"""

from __future__ import annotations

from typing import Optional

import dataclasses
import os

import keras
import tensorflow as tf

from electra_tf import config_io
from electra_tf.config import Config

CHECKPOINT_PREFIX = "ckpt"
# Object names in every checkpoint (checkpoint conversion relies on them):
#   model/…            the ElectraPretrainer by attribute: model/generator/layer_0/query/kernel,
#                      model/embeddings/word_embeddings, model/rtd_head/…
#   optimizer/…        optimizer variables by name: optimizer/iteration (the global step),
#                      optimizer/<variable path with _>_m (slots); loss scaling under
#                      optimizer/loss_scale.<name>
#   seed_generators/…  every dropout seed-generator state, keyed by its variable path
#   iterator           the global-batch tf.data iterator (cpu/gpu/mirrored only)
CHECKPOINT_KEYS = ("model", "optimizer", "seed_generators", "iterator")
# Config fields that may change between a run and its resumption (nothing that changes the
# model, the objective, the data order or the optimizer state).
RESUMABLE_CHANGES = ("train.num_steps", "train.log_every", "train.checkpoint_every",
                     "train.eval_every", "train.eval_steps", "train.keep_checkpoints",
                     "train.steps_per_loop")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible model_dir); the message says why."""


def warm_start_source(init_from: Optional[str]) -> Optional[str]:
    """The checkpoint ``--init_from`` names (a model_dir's latest, or a checkpoint prefix)."""
    if not init_from:
        return None
    source = (tf.train.latest_checkpoint(init_from) if tf.io.gfile.isdir(init_from)
              else init_from)
    if not source or not tf.io.gfile.exists(source + ".index"):
        raise TrainingError(f"--init_from {init_from}: no checkpoint there (expected a "
                            "pre-training model_dir with ckpt-* files, or a checkpoint prefix "
                            "such as MODEL_DIR/ckpt-1000)")
    return source


def check_resumable(model_dir: str, config: Config, latest: Optional[str]) -> None:
    """Refuses a ``model_dir`` trained with an incompatible (or unknown) config.

    Args:
      model_dir: the run's directory; its ``config.yaml`` is the saved config, if any.
      config: the config of this run.
      latest: ``model_dir``'s latest checkpoint (None for a fresh run).

    Raises:
      TrainingError: checkpoints without ``config.yaml``, or a saved config that differs in a
        key outside :data:`RESUMABLE_CHANGES` (every such key is listed).
    """
    saved_path = os.path.join(model_dir, "config.yaml")
    if latest and not tf.io.gfile.exists(saved_path):
        raise TrainingError(
            f"--model_dir {model_dir} has checkpoints ({latest}) but no config.yaml, "
            "so nothing says which model they hold; put its config.yaml back or use a new "
            "--model_dir")
    if not tf.io.gfile.exists(saved_path):
        return
    saved = _flatten(dataclasses.asdict(config_io.load_saved_config(model_dir)))
    now = _flatten(dataclasses.asdict(config))
    changed = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(now)
               if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES]
    if changed:
        raise TrainingError(
            f"{saved_path} was written by a run with a different config ("
            + "; ".join(changed) + f"). Only {', '.join(RESUMABLE_CHANGES)} may change "
            "when resuming; use a new --model_dir (with --init_from to warm-start)")


def model_state(pretrainer: keras.Model) -> dict:
    """The pretrainer's sub-layers by attribute name (``generator``, ``discriminator``, ...).

    Not the pretrainer itself: after ``compile`` it also tracks the optimizer, whose list of
    trained variables would give them the shortest (hence chosen) checkpoint names
    ``model/optimizer/_trainable_variables/<i>``.

    Raises:
      TrainingError: a model variable that none of the sub-layers holds (it would not be saved).
    """
    parts = {name: value for name, value in vars(pretrainer).items()
             if isinstance(value, keras.layers.Layer)}
    held = {id(v) for layer in parts.values() for v in layer.variables}
    missing = [v.path for v in pretrainer.variables if id(v) not in held]
    if missing:
        raise TrainingError(f"variables outside the sub-layers {sorted(parts)} would not be "
                            f"checkpointed: {missing}")
    return parts


def optimizer_state(optimizer: keras.optimizers.Optimizer) -> dict:
    """The optimizer's own variables (step, slots, loss scale), keyed by stable names.

    Checkpointing the optimizer object itself would also reach the model's variables through
    its ``_trainable_variables`` list, and TensorFlow names every variable by its *shortest*
    path: ``optimizer/_trainable_variables/17`` would win over
    ``model/generator/layer_0/query/kernel``. Slot names (``<variable path>_m``) do not depend on
    the optimizer's auto-generated name, which changes when a process builds a second one.
    """
    state = {v.name: v for v in optimizer.variables}
    if len(state) != len(optimizer.variables):
        raise TrainingError(f"optimizer variable names are not unique: "
                            f"{sorted(v.name for v in optimizer.variables)}")
    return state


def _flatten(tree: dict, prefix: str = "") -> dict:
    """A nested dict with dotted keys: ``{"train": {"seed": 0}}`` -> ``{"train.seed": 0}``."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
