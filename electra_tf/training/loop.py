"""The pre-training loop: checkpoints, exact resume, SIGTERM, TensorBoard, console progress.

``python -m electra_tf.pretrain`` calls :func:`run_pretraining`. Not Keras ``fit``: it keeps its
iterator private (no exact mid-epoch resume) and fails under ``MultiWorkerMirroredStrategy``
(PerReplica conversion errors). Each step is one ``tf.function`` call::

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

import dataclasses
import math
import os
import shutil
import tempfile
from typing import Callable, Optional

import keras
import tensorflow as tf

from electra_tf import config_io
from electra_tf.config import Config, ConfigError
from electra_tf.models.pretrained import save_pretrained
from electra_tf.objective.pretrainer import ElectraPretrainer
from electra_tf.tokenizer import tokenizer_from_config
from electra_tf.training import distribute
from electra_tf.training import input as data_lib
from electra_tf.training.checkpointing import (CHECKPOINT_PREFIX, RESUMABLE_CHANGES,
                                               TrainingError, _flatten, _init_source,
                                               model_state, optimizer_state)
from electra_tf.training.optimization import build_optimizer
from electra_tf.training.preemption import _TerminationFlag
from electra_tf.training.progress import METRICS_FILE, _format_metrics, _MetricsLog, _Progress


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
                    echo: Callable[[str], None] = print) -> RunResult:
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
      skip_corrupt: scan the shards first and train on the readable records of damaged ones.
      echo: receives one console line per log interval and status messages.

    Nothing is written into ``model_dir`` before the data, ``init_from`` and config are checked.

    Raises:
      TrainingError: non-finite loss (the last good checkpoint is kept); a ``model_dir``
        written with an incompatible config, or with checkpoints but no ``config.yaml``, or not
        writable; an ``init_from`` without a checkpoint or with another model's.
      electra_tf.config.ConfigError: ``model.vocab_size`` is not the vocabulary's size.
      electra_tf.training.input.DataError: missing, empty, unfinished, mismatched, damaged data.
    """
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.train.mixed_precision)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.train.seed)
    try:
        return _Run(config, model_dir, strategy, echo).train(
            data_pattern, eval_pattern, init_from, skip_corrupt)
    finally:
        keras.config.set_dtype_policy(previous_policy)


class _Run:
    """One invocation of the loop; split into steps so each reads on its own."""

    def __init__(self, config: Config, model_dir: str, strategy: tf.distribute.Strategy,
                 echo: Callable[[str], None]):
        self.config = config
        self.model_dir = model_dir
        self.strategy = strategy
        self.chief = distribute.is_chief(strategy)
        self.echo = echo if self.chief else (lambda line: None)
        self.global_iterator = distribute.uses_global_iterator(strategy)
        self.tokenizer = tokenizer_from_config(config.data)
        if config.model.vocab_size != self.tokenizer.vocab_size:
            # A larger table trains rows no token uses (and starts the generator loss at
            # ln model.vocab_size); a smaller one fails on the first id past its end.
            raise ConfigError(
                f"model.vocab_size={config.model.vocab_size}, but the vocabulary "
                f"{self.tokenizer.vocab_path} has {self.tokenizer.vocab_size} tokens; set "
                f"model.vocab_size={self.tokenizer.vocab_size} (python -m electra_tf.pretrain "
                "takes it from the vocabulary when it is not set)")
        self.batch_size = config.train.batch_size
        if self.batch_size % strategy.num_replicas_in_sync:
            raise TrainingError(
                f"train.batch_size={self.batch_size} is not divisible by the "
                f"{strategy.num_replicas_in_sync} replicas of this strategy")

    # -- setup ----------------------------------------------------------------------------------

    def train(self, data_pattern, eval_pattern, init_from, skip_corrupt) -> RunResult:
        cfg = self.config
        # Every input is checked before anything is written into model_dir.
        self.train_shards = data_lib.find_shards(
            data_pattern, cfg.data.seq_length, self.tokenizer, "train", skip_corrupt)
        self.eval_shards = eval_pattern and data_lib.find_shards(
            eval_pattern, cfg.data.seq_length, self.tokenizer, "validation", skip_corrupt)
        latest = tf.train.latest_checkpoint(self.model_dir)
        init_source = None if latest else _init_source(init_from)
        self._check_config(latest)
        self._build_model()
        iterator = iter(self._train_dataset(resume_step=0)) if self.global_iterator else None
        checkpoint = tf.train.Checkpoint(
            model=model_state(self.pretrainer), optimizer=optimizer_state(self.optimizer),
            seed_generators=self.pretrainer.seed_generator_variables(),
            **({"iterator": iterator} if iterator is not None else {}))
        resumed_from = self._restore(checkpoint, latest, init_source)
        self._save_config()
        if iterator is None:
            iterator = iter(self._train_dataset(resume_step=resumed_from))
        manager_dir = self.model_dir if self.chief else tempfile.mkdtemp(prefix="electra_worker_")
        manager = tf.train.CheckpointManager(
            checkpoint, manager_dir, max_to_keep=cfg.train.keep_checkpoints,
            checkpoint_name=CHECKPOINT_PREFIX)
        try:
            return self._loop(iterator, manager, resumed_from)
        finally:
            if not self.chief:
                shutil.rmtree(manager_dir, ignore_errors=True)

    def _check_config(self, latest: Optional[str]) -> None:
        """Refuses a model_dir trained with an incompatible (or unknown) config.

        The chief only: other workers could read the file while the chief writes it.
        """
        if not self.chief:
            return
        saved_path = os.path.join(self.model_dir, "config.yaml")
        if latest and not tf.io.gfile.exists(saved_path):
            raise TrainingError(
                f"--model_dir {self.model_dir} has checkpoints ({latest}) but no config.yaml, "
                "so nothing says which model they hold; put its config.yaml back or use a new "
                "--model_dir")
        if tf.io.gfile.exists(saved_path):
            saved = _flatten(dataclasses.asdict(config_io.load_saved_config(self.model_dir)))
            now = _flatten(dataclasses.asdict(self.config))
            changed = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(now)
                       if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES
                       and not k.startswith("finetune.")]
            if changed:
                raise TrainingError(
                    f"{saved_path} was written by a run with a different config ("
                    + "; ".join(changed) + f"). Only {', '.join(RESUMABLE_CHANGES)} may change "
                    "when resuming; use a new --model_dir (with --init_from to warm-start)")

    def _save_config(self) -> None:
        """Writes the effective config into model_dir: its first write (the chief's only)."""
        if not self.chief:
            return
        try:
            config_io.save_config(self.config, self.model_dir,
                                   extra={"tokenizer": self.tokenizer.settings()})
        except tf.errors.OpError as e:  # a regular file in the path, no permission, ...
            raise TrainingError(f"--model_dir {self.model_dir}: cannot write there "
                                f"({e.message})") from None

    def _build_model(self) -> None:
        """Creates every variable (model, optimizer slots) inside the strategy scope."""
        cfg = self.config
        with self.strategy.scope():
            self.pretrainer = ElectraPretrainer(cfg, self.tokenizer)  # builds its variables
            self.optimizer = build_optimizer(cfg.optimizer, cfg.train.num_steps, self.pretrainer,
                                             mixed_precision=cfg.train.mixed_precision)
            self.pretrainer.compile(optimizer=self.optimizer)

    def _train_dataset(self, resume_step: int):
        """The global-batch dataset (one iterator feeds all replicas) or a distributed one.

        The distributed one (multi_worker/tpu) starts at the file-level position of
        ``resume_step`` (:func:`electra_tf.training.input.resume_file_position`); the global one
        starts
        at the beginning and is restored from the checkpoint.
        """
        cfg = self.config
        kwargs = dict(seed=cfg.train.seed, shuffle_buffer=cfg.data.shuffle_buffer,
                      cycle_length=cfg.data.cycle_length)
        if self.global_iterator:
            return data_lib.pretraining_dataset(self.train_shards, self.batch_size, **kwargs)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: data_lib.pretraining_dataset(
                self.train_shards, ctx.get_per_replica_batch_size(self.batch_size),
                num_input_pipelines=ctx.num_input_pipelines,
                input_pipeline_id=ctx.input_pipeline_id,
                start_file=data_lib.resume_file_position(
                    self.train_shards, resume_step, self.batch_size, ctx.num_input_pipelines,
                    cfg.data.cycle_length),
                **kwargs))

    def _eval_dataset(self):
        if self.global_iterator:
            return data_lib.pretraining_dataset(self.eval_shards, self.batch_size, seed=0,
                                                training=False)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: data_lib.pretraining_dataset(
                self.eval_shards, ctx.get_per_replica_batch_size(self.batch_size), seed=0,
                training=False, num_input_pipelines=ctx.num_input_pipelines,
                input_pipeline_id=ctx.input_pipeline_id))

    def _restore(self, checkpoint: tf.train.Checkpoint, latest: Optional[str],
                 init_source: Optional[str]) -> int:
        """Resumes from model_dir's ``latest`` checkpoint, else warm-starts from
        ``init_source``."""
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            step = int(self.optimizer.iterations.numpy())
            self.echo(f"resumed from {latest} at step {step}")
            return step
        if init_source:
            try:
                tf.train.Checkpoint(model=model_state(self.pretrainer)).restore(init_source) \
                    .expect_partial().assert_existing_objects_matched()
            except (ValueError, AssertionError) as e:  # shapes or names of another model
                raise TrainingError(f"--init_from {init_source}: does not hold this config's "
                                    f"model ({str(e).splitlines()[0]})") from None
            self.echo(f"initialized the model from {init_source} (fresh optimizer, step 0)")
        return 0

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self, iterator, manager, resumed_from: int) -> RunResult:
        cfg = self.config.train
        train_fn, eval_fn = self._step_functions()
        log = _MetricsLog(os.path.join(self.model_dir, METRICS_FILE), resumed_from, self.chief)
        progress = _Progress(self)
        step, eval_metrics = resumed_from, {}
        checkpoint = manager.latest_checkpoint or tf.train.latest_checkpoint(self.model_dir)
        try:
            with _TerminationFlag() as terminate:
                # A SIGTERM during the last evaluation left it undone: the rerun does it first
                # (one process only: other workers cannot see the chief's metrics file).
                if (self.eval_shards and step == cfg.num_steps and step not in log.eval_steps
                        and distribute.uses_global_iterator(self.strategy)
                        and (eval_metrics := self._evaluate(eval_fn, terminate) or {})):
                    log.write("eval", step, eval_metrics)
                    progress.write_eval(step, eval_metrics)
                while step < cfg.num_steps:
                    try:
                        outputs = train_fn(iterator, tf.constant(int(terminate.raised)))
                    except tf.errors.DataLossError as e:
                        raise data_lib.explain_read_error(self.train_shards, e) from e
                    metrics = {k: float(v) for k, v in outputs.items()}
                    stop = metrics.pop("stop_requests") > 0
                    step += 1
                    if not math.isfinite(metrics["loss"]):
                        raise TrainingError(
                            f"non-finite loss at step {step}: {_format_metrics(metrics)}. "
                            f"Stopped without saving; the last good checkpoint is "
                            f"{checkpoint or '(none yet)'}. Lower optimizer.learning_rate or "
                            "check the data")
                    log.write("train", step, metrics)
                    progress.update(step, metrics)
                    if (self.eval_shards and not stop
                            and (step % cfg.eval_every == 0 or step == cfg.num_steps)):
                        evaluated = self._evaluate(eval_fn, terminate)
                        stop = evaluated is None
                        if not stop:
                            eval_metrics = evaluated
                            log.write("eval", step, eval_metrics)
                            progress.write_eval(step, eval_metrics)
                    if step % cfg.checkpoint_every == 0 or step == cfg.num_steps or stop:
                        checkpoint = self._save(manager, step)
                    if stop:
                        self.echo(f"stopped by SIGTERM at step {step}; checkpoint {checkpoint}; "
                                  "run the same command again to resume")
                        return RunResult(step, False, resumed_from, progress.last,
                                         eval_metrics, checkpoint)
        finally:
            log.close()
            progress.close()
        if self.chief:
            save_pretrained(os.path.join(self.model_dir, "pretrained"), self.config,
                            self.tokenizer, discriminator=self.pretrainer.backbone,
                            generator=self.pretrainer.masked_language_model())
        return RunResult(step, True, resumed_from, progress.last, eval_metrics, checkpoint)

    def _save(self, manager, step: int) -> str:
        path = manager.save(checkpoint_number=step)
        return path if self.chief else tf.train.latest_checkpoint(self.model_dir)

    def _step_functions(self):
        """``tf.function``s for one training step and one evaluation batch."""
        strategy, pretrainer = self.strategy, self.pretrainer
        replicas = strategy.num_replicas_in_sync
        per_replica = self.batch_size // replicas
        train_step, test_step = pretrainer.train_step, pretrainer.test_step
        if self.config.train.jit_compile:
            # XLA compiles the per-replica computation (cross-replica sums stay collectives).
            train_step = tf.function(train_step, jit_compile=True, autograph=False)
            test_step = tf.function(test_step, jit_compile=True, autograph=False)

        def replicate(iterator):
            if not self.global_iterator:
                return next(iterator)
            batch = next(iterator)

            def slice_for(ctx):
                # The loop splits the checkpointed global batch itself, so the input position
                # (and example_index, the global position) is the same for any replica count.
                start = ctx.replica_id_in_sync_group * per_replica
                return {k: v[start:start + per_replica] for k, v in batch.items()}

            return strategy.experimental_distribute_values_from_function(slice_for)

        def with_global_index(batch):
            if self.global_iterator:
                return batch
            # Per-replica datasets number their examples 0 … per_replica − 1.
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            return dict(batch, example_index=batch["example_index"] + replica * per_replica)

        def with_stop_requests(metrics, stop):
            # Every worker learns that one of them got SIGTERM, so they all stop together.
            # (Cast inside the replica: an all-reduce needs a value placed on a replica device.)
            return {**metrics, "stop_requests": tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(stop, tf.float32))}

        def replica_train(batch, stop):
            return with_stop_requests(train_step(with_global_index(batch)), stop)

        def replica_eval(batch, stop):
            return with_stop_requests(test_step(with_global_index(batch)), stop)

        def first_replica(outputs):
            # Metrics are global values, identical on every replica.
            return {k: strategy.experimental_local_results(v)[0] for k, v in outputs.items()}

        # No AutoGraph: the steps are written with explicit TF control flow (as Keras' own
        # trainer, which does not convert train_step either), and converting them costs seconds.
        @tf.function(autograph=False)
        def train_fn(iterator, stop):
            return first_replica(strategy.run(replica_train, (replicate(iterator), stop)))

        @tf.function(autograph=False)
        def eval_fn(iterator, stop):
            return first_replica(strategy.run(replica_eval, (replicate(iterator), stop)))

        return train_fn, eval_fn

    def _evaluate(self, eval_fn, terminate: _TerminationFlag) -> Optional[dict]:
        """Means of the evaluation metrics over ``train.eval_steps`` validation batches.

        Returns None when SIGTERM arrives first: a long evaluation must not outlast the grace
        period of a preemption. As in training, the workers agree on it inside each batch.
        """
        iterator = iter(self._eval_dataset())
        sums: dict[str, float] = {}
        for _ in range(self.config.train.eval_steps):
            outputs = eval_fn(iterator, tf.constant(int(terminate.raised)))
            if float(outputs.pop("stop_requests")) > 0:
                return None
            for k, v in outputs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / self.config.train.eval_steps for k, v in sums.items()}
