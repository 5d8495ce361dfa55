"""The pre-training loop: checkpoints, exact resume, SIGTERM, TensorBoard, console progress.

``python -m electra_tf.pretrain`` calls :func:`run_pretraining`. Not Keras ``fit``: it keeps its
iterator private (no exact mid-epoch resume) and fails under ``MultiWorkerMirroredStrategy``
(PerReplica conversion errors). Each ``tf.function`` call runs up to ``train.steps_per_loop``
steps (:mod:`electra_tf.training.steps`), and every step's metrics come back::

    batch = next(iterator)                               # global batch (cpu/gpu/mirrored)
    per_replica = split across replicas                  # or: next(distributed iterator)
    metrics = strategy.run(pretrainer.train_step, (per_replica,))

Files written to ``model_dir`` (by the chief only under ``multi_worker``):

* ``config.yaml`` / ``config.json`` — the effective config (+ tokenizer settings in the JSON);
* ``ckpt-<step>.index`` / ``.data-*`` / ``checkpoint`` — ``tf.train.CheckpointManager``; the
  object names are :data:`~electra_tf.training.checkpointing.CHECKPOINT_KEYS`;
* ``metrics.jsonl``, ``train/`` and ``eval/`` — :mod:`electra_tf.training.progress`;
* ``pretrained/`` — the final discriminator and generator (``electra_tf.models.pretrained``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import tempfile
from typing import Callable, Optional

import keras
import tensorflow as tf

from electra_tf import config_io
from electra_tf.config import Config, ConfigError, TrainConfig
from electra_tf.models.pretrained import save_pretrained
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.tokenizer import Tokenizer, tokenizer_from_config
from electra_tf.training import checkpointing, distribute, steps
from electra_tf.training import input as data_lib
from electra_tf.training.checkpointing import CHECKPOINT_PREFIX, TrainingError
from electra_tf.training.monitoring import HealthMonitor
from electra_tf.training.optimization import build_optimizer
from electra_tf.training.preemption import TerminationFlag
from electra_tf.training.progress import (METRICS_FILE, MetricsLog, Progress, format_metrics,
                                          learning_rate_at)
from electra_tf.training.schedules import warmup_steps


@dataclasses.dataclass
class RunResult:
    """What :func:`run_pretraining` did.

    Attributes:
      step: global step reached (``optimizer.iterations``).
      completed: ``train.num_steps`` reached (False when stopped by SIGTERM).
      resumed_from: step of the checkpoint the run started from (0 for a fresh run).
      train_metrics: means over the last log interval.
      eval_metrics: means over the last evaluation ({} without ``eval_pattern``).
      checkpoint: path of the last checkpoint written.
    """

    step: int
    completed: bool
    resumed_from: int
    train_metrics: dict
    eval_metrics: dict
    checkpoint: Optional[str]


def run_pretraining(config: Config, data_pattern: str, model_dir: str,
                    strategy: tf.distribute.Strategy, eval_pattern: Optional[str] = None,
                    init_from: Optional[str] = None, skip_corrupt: bool = False,
                    echo: Callable[[str], None] = print,
                    init_optimizer: bool = False) -> RunResult:
    """Pre-trains ELECTRA (or the MLM ablation) until ``config.train.num_steps``.

    Restarting the same call resumes from the latest checkpoint in ``model_dir``: exactly (same
    per-step losses as an uninterrupted run with ``train.deterministic``) on cpu/gpu/mirrored,
    at a file-level input position on multi_worker/tpu (``docs/pretraining.md``).

    Args:
      config: the effective config (``electra_tf.config_io.load_config``).
      data_pattern: training TFRecords: a glob or a data directory (its ``train`` split).
      model_dir: checkpoints, logs, TensorBoard, config and the final ``pretrained/`` model.
      strategy: from ``electra_tf.training.distribute.make_strategy``.
      eval_pattern: validation TFRecords (glob or directory: its ``validation`` split);
        evaluated every ``train.eval_every`` steps and at the end.
      init_from: a pre-training ``model_dir`` (or checkpoint prefix) whose model weights start
        this run (warm start: fresh optimizer and step); ignored when resuming.
      init_optimizer: with ``init_from``, also restore its optimizer (step, moments): the run
        continues the learning-rate schedule from that step, on this run's data from its start
        (``python -m electra_tf.convert import tf1 --with_optimizer`` writes such checkpoints).
      skip_corrupt: scan the shards first and train on the readable records of damaged ones.
      echo: receives one console line per log interval and status messages.

    Nothing is written into ``model_dir`` before the data, ``init_from`` and config are checked.

    Raises:
      TrainingError: non-finite loss (the last good checkpoint is kept); a ``model_dir``
        written with an incompatible config, or with checkpoints but no ``config.yaml``, or not
        writable; an ``init_from`` without a checkpoint or with another model's; an op without
        a deterministic implementation under ``train.deterministic``.
      electra_tf.config.ConfigError: ``model.vocab_size`` is not the vocabulary's size.
      electra_tf.training.input.DataError: missing, empty, unfinished, mismatched, damaged data.
    """
    cfg = config.train
    with _keras_settings(cfg):
        chief = distribute.is_chief(strategy)
        echo = echo if chief else (lambda line: None)
        tokenizer = tokenizer_from_config(config.data)
        _check_vocab_size(config, tokenizer)
        if cfg.batch_size % strategy.num_replicas_in_sync:
            raise TrainingError(
                f"train.batch_size={cfg.batch_size} is not divisible by the "
                f"{strategy.num_replicas_in_sync} replicas of this strategy")
        # Every input is checked before anything is written into model_dir.
        train_shards = data_lib.find_shards(
            data_pattern, config.data.seq_length, tokenizer, "train", skip_corrupt)
        eval_shards = eval_pattern and data_lib.find_shards(
            eval_pattern, config.data.seq_length, tokenizer, "validation", skip_corrupt)
        pipelines = distribute.num_input_pipelines(strategy)
        if pipelines > 1:  # each host or worker reads whole files of its own
            for shards in filter(None, (train_shards, eval_shards)):
                data_lib.check_shards_per_pipeline(shards, pipelines)
        latest = tf.train.latest_checkpoint(model_dir)
        init_source = None if latest else checkpointing.warm_start_source(init_from)
        if chief:  # other workers could read config.yaml while the chief writes it
            checkpointing.check_resumable(model_dir, config, latest)

        # Build every variable (model, optimizer slots) inside the strategy scope.
        with strategy.scope():
            pretrainer = build_pretrainer(config, tokenizer)  # builds its variables
            optimizer = build_optimizer(config.optimizer, cfg.num_steps, pretrainer,
                                        mixed_precision=cfg.mixed_precision)
            pretrainer.compile(optimizer=optimizer)
        global_iterator = distribute.uses_global_iterator(strategy)
        # The global iterator is checkpointed; a distributed one starts where resume puts it.
        iterator = (iter(_train_dataset(strategy, train_shards, config, resume_step=0))
                    if global_iterator else None)
        checkpoint = tf.train.Checkpoint(
            model=checkpointing.model_state(pretrainer),
            optimizer=checkpointing.optimizer_state(optimizer),
            seed_generators=pretrainer.seed_generator_variables(),
            **({"iterator": iterator} if iterator is not None else {}))

        # Resume from model_dir, or warm-start from init_from, or start fresh.
        resumed_from = _restore(checkpoint, latest, init_source, pretrainer, optimizer, echo,
                                init_optimizer, cfg.num_steps)
        if chief:
            _save_config(config, tokenizer, model_dir)  # the first write into model_dir
        if iterator is None:
            # (A warm start with the optimizer reads its new data from the beginning.)
            iterator = iter(_train_dataset(strategy, train_shards, config,
                                           resumed_from if latest else 0))
        train_loop, eval_step = steps.build_step_functions(strategy, pretrainer, cfg.batch_size,
                                                           cfg.jit_compile)
        # Calls end where the loop has work between them: log, checkpoint, evaluation.
        intervals = (cfg.log_every, cfg.checkpoint_every) + ((cfg.eval_every,) if eval_shards
                                                             else ())

        step, eval_metrics, stop = resumed_from, {}, False
        with contextlib.ExitStack() as stack:
            # Only the chief writes model_dir; the others save into a directory that goes.
            manager = tf.train.CheckpointManager(
                checkpoint, model_dir if chief else stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="electra_worker_",
                                                ignore_cleanup_errors=True)),
                max_to_keep=cfg.keep_checkpoints, checkpoint_name=CHECKPOINT_PREFIX)
            last_checkpoint = manager.latest_checkpoint or latest
            log = stack.enter_context(
                MetricsLog(os.path.join(model_dir, METRICS_FILE), resumed_from, chief))
            progress = stack.enter_context(Progress(
                model_dir if chief else None, cfg.num_steps, cfg.log_every, cfg.batch_size,
                config.data.seq_length, functools.partial(learning_rate_at, optimizer),
                HealthMonitor(warmup_steps(config.optimizer, cfg.num_steps)),
                evaluates=bool(eval_shards), echo=echo))
            terminate = stack.enter_context(TerminationFlag())
            try:
                # A SIGTERM during the last evaluation left it undone: the rerun does it first
                # (one process only: other workers cannot see the chief's metrics file).
                if (eval_shards and step == cfg.num_steps and step not in log.eval_steps
                        and global_iterator and (eval_metrics := _evaluate(
                            eval_step, strategy, eval_shards, cfg, terminate) or {})):
                    log.write("eval", step, eval_metrics)
                    progress.write_eval(step, eval_metrics)
                while step < cfg.num_steps and not stop:
                    count = steps.steps_in_call(step, cfg.steps_per_loop, cfg.num_steps, intervals)
                    try:
                        columns = train_loop(iterator, tf.constant(count),
                                             tf.constant(int(terminate.raised)))
                    except tf.errors.DataLossError as e:
                        raise data_lib.explain_read_error(train_shards, e) from e
                    for metrics in steps.per_step(columns):  # the steps of this call, in order
                        stop = metrics.pop("stop_requests") > 0
                        step += 1
                        if not math.isfinite(metrics["loss"]):
                            raise TrainingError(
                                f"non-finite loss at step {step}: {format_metrics(metrics)}. "
                                f"Stopped without saving; the last good checkpoint is "
                                f"{last_checkpoint or '(none yet)'}. Lower "
                                "optimizer.learning_rate or check the data")
                        log.write("train", step, metrics)
                        progress.update(step, metrics)
                    if (eval_shards and not stop
                            and (step % cfg.eval_every == 0 or step == cfg.num_steps)):
                        evaluated = _evaluate(eval_step, strategy, eval_shards, cfg, terminate)
                        stop = evaluated is None
                        if not stop:
                            eval_metrics = evaluated
                            log.write("eval", step, eval_metrics)
                            progress.write_eval(step, eval_metrics)
                    if step % cfg.checkpoint_every == 0 or step == cfg.num_steps or stop:
                        last_checkpoint = _save(manager, step, chief, model_dir)
            except tf.errors.UnimplementedError as e:
                if (message := steps.determinism_error_message(e)) is None:
                    raise
                raise TrainingError(message) from e
        if stop:
            echo(f"stopped by SIGTERM at step {step}; checkpoint {last_checkpoint}; "
                 "run the same command again to resume")
            return RunResult(step, False, resumed_from, progress.last, eval_metrics,
                             last_checkpoint)
        if chief:
            save_pretrained(os.path.join(model_dir, "pretrained"), config, tokenizer,
                            discriminator=pretrainer.backbone,
                            generator=pretrainer.masked_language_model())
        return RunResult(step, True, resumed_from, progress.last, eval_metrics, last_checkpoint)


@contextlib.contextmanager
def _keras_settings(train: TrainConfig):
    """The run's dtype policy (restored afterwards), op determinism and seed."""
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(train.mixed_precision)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(train.seed)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _check_vocab_size(config: Config, tokenizer: Tokenizer) -> None:
    if config.model.vocab_size != tokenizer.vocab_size:
        # A larger table trains rows no token uses (and starts the generator loss at
        # ln model.vocab_size); a smaller one fails on the first id past its end.
        raise ConfigError(
            f"model.vocab_size={config.model.vocab_size}, but the vocabulary "
            f"{tokenizer.vocab_path} has {tokenizer.vocab_size} tokens; set "
            f"model.vocab_size={tokenizer.vocab_size} (python -m electra_tf.pretrain "
            "takes it from the vocabulary when it is not set)")


def _save_config(config: Config, tokenizer: Tokenizer, model_dir: str) -> None:
    """Writes the effective config (and the tokenizer's settings) into model_dir."""
    try:
        config_io.save_config(config, model_dir, extra={"tokenizer": tokenizer.settings()})
    except tf.errors.OpError as e:  # a regular file in the path, no permission, ...
        raise TrainingError(f"--model_dir {model_dir}: cannot write there "
                            f"({e.message})") from None


def _restore(checkpoint: tf.train.Checkpoint, latest: Optional[str], init_source: Optional[str],
             pretrainer: keras.Model, optimizer: keras.optimizers.Optimizer,
             echo: Callable[[str], None], init_optimizer: bool, num_steps: int) -> int:
    """Resumes from ``latest`` (model_dir's checkpoint), else warm-starts the model (and with
    ``init_optimizer`` the optimizer) from ``init_source``; returns the step the run starts
    from."""
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(optimizer.iterations.numpy())
        echo(f"resumed from {latest} at step {step}")
        return step
    if not init_source:
        return 0
    parts = {"model": checkpointing.model_state(pretrainer)}
    if init_optimizer:
        saved = {name for name, _ in tf.train.list_variables(init_source)}
        if not any(name.startswith("optimizer/") for name in saved):
            raise TrainingError(f"--init_optimizer: {init_source} holds no optimizer state "
                                "(python -m electra_tf.convert import tf1 writes it with "
                                "--with_optimizer)")
        parts["optimizer"] = checkpointing.optimizer_state(optimizer)
    try:
        tf.train.Checkpoint(**parts).restore(init_source).expect_partial() \
            .assert_existing_objects_matched()
    except (ValueError, AssertionError) as e:  # shapes or names of another model
        raise TrainingError(f"--init_from {init_source}: does not hold this config's "
                            f"model ({str(e).splitlines()[0]})") from None
    if not init_optimizer:
        echo(f"initialized the model from {init_source} (fresh optimizer, step 0)")
        return 0
    step = int(optimizer.iterations.numpy())
    if step >= num_steps:
        raise TrainingError(f"--init_optimizer: {init_source} is at step {step}, but "
                            f"train.num_steps={num_steps}: the schedule has ended; set a larger "
                            "train.num_steps")
    echo(f"initialized the model and optimizer from {init_source} (step {step}; the data "
         "starts from its beginning)")
    return step


def _train_dataset(strategy: tf.distribute.Strategy, shards: data_lib.Shards, config: Config,
                   resume_step: int):
    """The global-batch dataset (one iterator feeds all replicas) or a distributed one.

    The distributed one (multi_worker/tpu) starts at the file-level position of ``resume_step``
    (:func:`electra_tf.training.input.resume_file_position`); the global one starts at the
    beginning and is restored from the checkpoint.
    """
    batch_size = config.train.batch_size
    kwargs = dict(seed=config.train.seed, shuffle_buffer=config.data.shuffle_buffer,
                  cycle_length=config.data.cycle_length)
    if distribute.uses_global_iterator(strategy):
        return data_lib.pretraining_dataset(shards, batch_size, **kwargs)
    return strategy.distribute_datasets_from_function(
        lambda ctx: data_lib.pretraining_dataset(
            shards, ctx.get_per_replica_batch_size(batch_size),
            num_input_pipelines=ctx.num_input_pipelines,
            input_pipeline_id=ctx.input_pipeline_id,
            start_file=data_lib.resume_file_position(
                shards, resume_step, batch_size, ctx.num_input_pipelines,
                config.data.cycle_length),
            **kwargs))


def _evaluate(eval_step: Callable, strategy: tf.distribute.Strategy, shards: data_lib.Shards,
              train: TrainConfig, terminate: TerminationFlag) -> Optional[dict]:
    """Means of the evaluation metrics over ``train.eval_steps`` validation batches.

    Returns None when SIGTERM arrives first: a long evaluation must not outlast the grace
    period of a preemption. As in training, the workers agree on it inside each batch.
    """
    batch_size = train.batch_size
    if distribute.uses_global_iterator(strategy):
        dataset = data_lib.pretraining_dataset(shards, batch_size, seed=0, training=False)
    else:
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx: data_lib.pretraining_dataset(
                shards, ctx.get_per_replica_batch_size(batch_size), seed=0, training=False,
                num_input_pipelines=ctx.num_input_pipelines,
                input_pipeline_id=ctx.input_pipeline_id))
    iterator = iter(dataset)
    sums: dict[str, float] = {}
    for _ in range(train.eval_steps):
        outputs = eval_step(iterator, tf.constant(int(terminate.raised)))
        if float(outputs.pop("stop_requests")) > 0:
            return None
        for k, v in outputs.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: v / train.eval_steps for k, v in sums.items()}


def _save(manager: tf.train.CheckpointManager, step: int, chief: bool, model_dir: str) -> str:
    """Writes the checkpoint of ``step``; returns its path in model_dir (the chief's)."""
    path = manager.save(checkpoint_number=step)
    return path if chief else tf.train.latest_checkpoint(model_dir)
