"""``tf.distribute`` strategies from a name: ``cpu | gpu | mirrored | multi_worker | tpu``.

Every strategy runs the same training loop (``electra_tf.training.loop``); they differ only in
how the strategy is built and in how input reaches the replicas (:func:`uses_global_iterator`):

* ``cpu`` / ``gpu`` / ``mirrored`` (one machine): the loop owns one global-batch ``tf.data``
  iterator, saved in every checkpoint, and splits each global batch across the replicas itself.
  Resume is exact.
* ``multi_worker`` / ``tpu``: each worker reads its own files through
  ``strategy.distribute_datasets_from_function``; a restart resumes at a file-level position.

``multi_worker`` reads the cluster from ``TF_CONFIG`` (TensorFlow's convention; one process per
machine, every process runs the same command).
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("cpu", "gpu", "mirrored", "multi_worker", "tpu")


class StrategyError(ValueError):
    """The requested strategy cannot be built on this machine."""


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """Builds the named strategy.

    Args:
      name: one of :data:`STRATEGIES`. ``mirrored`` uses every local GPU or, without GPUs,
        every logical CPU device (see :func:`split_cpu`).
      tpu: TPU name or ``grpc://`` address for ``tpu``; ``local`` for the TPU attached to this
        VM; empty reads the ``TPU_NAME`` environment variable.

    Raises:
      StrategyError: unknown name, or ``gpu`` without a visible GPU.
    """
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not tf.config.list_logical_devices("GPU"):
            raise StrategyError("--strategy=gpu but TensorFlow sees no GPU "
                                "(check CUDA drivers, or use --strategy=cpu)")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                   or [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver())
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise StrategyError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


def uses_global_iterator(strategy: tf.distribute.Strategy) -> bool:
    """True when one process feeds every replica (exact, checkpointed input position)."""
    return not isinstance(strategy, (tf.distribute.MultiWorkerMirroredStrategy,
                                     tf.distribute.TPUStrategy))


def num_input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """How many input pipelines ``distribute_datasets_from_function`` will create: one per TPU
    host or per worker process (chief included); 1 when one iterator feeds every replica."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return strategy.extended.num_hosts
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        spec = strategy.cluster_resolver.cluster_spec()
        return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)
    return 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes checkpoints, logs and exports (the only one if local)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    # Without a "chief" job, worker 0 is the chief (TF_CONFIG convention).
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def worker_id(strategy: tf.distribute.Strategy) -> str:
    """``<task_type>_<task_id>`` of this process (``local_0`` when not in a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "local_0"
    return f"{resolver.task_type}_{resolver.task_id}"


def split_cpu(num_devices: int) -> None:
    """Splits the physical CPU into ``num_devices`` logical devices (before TF initializes).

    Lets ``mirrored`` run several replicas on a machine without GPUs (tests, debugging).

    Raises:
      StrategyError: when TensorFlow's devices are already initialized.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as e:
        raise StrategyError(f"cannot split the CPU into {num_devices} devices: {e}") from None
