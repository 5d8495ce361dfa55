"""The metrics of one pre-training step, global over the replicas.

Each replica computes its shares of the losses and the sums behind every metric
(``losses.mlm_counts``, ``rtd_counts``, ``rtd_histograms``, ``cosine_sums``); one all-reduce adds
them over the replicas and the ratios are taken after it, so every replica returns the values of
the global batch.
"""

from __future__ import annotations

import tensorflow as tf

from electra_tf.objective import losses


def all_reduce_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum over the replicas of the current replica context (identity on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_counts(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Predicted positions (``weights``) and non-padding tokens of the global batch."""
    local = tf.stack([tf.reduce_sum(batch["weights"]),
                      tf.reduce_sum(tf.cast(batch["padding_mask"], tf.float32))])
    total = all_reduce_sum(local)
    return {"predictions": total[0], "tokens": total[1]}


def global_metrics(sums: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Global metric values from this replica's loss shares and sums.

    The discriminator's metrics are returned when ``sums`` holds a ``discriminator_loss``
    (the ELECTRA objective), the generator's always.
    """
    # One all-reduce for every sum (scalars, the cosine sum vector, the AUC histograms).
    keys = sorted(sums)
    sizes = [sums[k].shape.num_elements() for k in keys]  # static: scalars, [H], [bins]
    flat = all_reduce_sum(tf.concat([tf.reshape(sums[k], [-1]) for k in keys], axis=0))
    total = {k: tf.reshape(part, sums[k].shape) for k, part in zip(keys, tf.split(flat, sizes))}
    metrics = {"loss": total["loss"], "generator_loss": total["generator_loss"],
               "generator_accuracy": losses.safe_ratio(total["generator_correct"],
                                                       total["predictions"]),
               "representation_cosine": losses.mean_cosine(total["unit_sum"],
                                                            total["unit_count"])}
    if "discriminator_loss" in total:
        metrics.update({
            "discriminator_loss": total["discriminator_loss"],
            "discriminator_accuracy": losses.safe_ratio(total["discriminator_correct"],
                                                        total["tokens"]),
            "discriminator_precision": losses.safe_ratio(total["true_positives"],
                                                         total["predicted_positives"]),
            "discriminator_recall": losses.safe_ratio(total["true_positives"],
                                                      total["actual_positives"]),
            "discriminator_auc": losses.auc_from_histograms(total["replaced_histogram"],
                                                            total["original_histogram"]),
            "replaced_fraction": losses.safe_ratio(total["replaced_at_masked"],
                                                   total["predictions"]),
        })
    return metrics
