"""``ElectraPretrainer``: the ELECTRA objective in one Keras ``train_step``.

One step, as the paper (Clark et al. 2020, §2) and google-research/electra
``run_pretraining.py``:

1. mask ~15% of the tokens in the graph (``masking.mask_tokens``);
2. the generator predicts them: MLM loss on the masked positions only;
3. replacements are sampled from the generator by Gumbel-max at temperature 1, without
   gradient (``sampling.gumbel_max_sample``);
4. the discriminator reads the original sequence with the samples written in and labels each
   token ``is_replaced = sample != original``: sigmoid loss over all non-padding tokens;
5. ``loss = 1 · mlm + 50 · rtd``; one optimizer step on the sum of both.

``objective: mlm`` keeps steps 1-2 only: a BERT-style MLM of width ``config.model`` (the
discriminator side does not exist), for ablations.

Distribution contract (the training loop calls ``strategy.run(pretrainer.train_step, ...)``):

* randomness is keyed on ``(config.train.seed, step, example_index)`` with ``step =
  optimizer.iterations`` at the start of ``train_step``; ``batch["example_index"]`` is the
  example's index in the *global* batch, derived as
  ``replica_id · local_batch + range(local_batch)`` when absent (plain ``model.fit``, which
  splits global batches contiguously);
* losses are divided by counts of the *global* batch (all-reduced across replicas), so the
  gradients summed across replicas by ``optimization.apply_gradients`` are exactly the global
  batch's gradients, clipped after the sum;
* every returned metric is already global (all-reduced): identical on every replica; take any
  replica's value.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf

from electra_tf.config import Config, from_dict, to_dict
from electra_tf.models.embeddings import ElectraEmbeddings
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.models.heads import MaskedLanguageModel, MaskedLMHead, ReplacedTokenHead
from electra_tf.models.layers import SeededDropout, derive_seed
from electra_tf.objective import losses, masking, sampling
from electra_tf.training.gradients import accumulate_gradients, apply_gradients

INPUT_KEYS = ("token_ids", "segment_ids", "padding_mask")

# Metrics returned by train_step/test_step (train_step adds "gradient_norm").
# ``representation_cosine`` is the mean cosine between the backbone's token outputs (the
# discriminator's, or the MLM encoder's): near 1 means collapsed representations.
ELECTRA_METRICS = ("loss", "generator_loss", "generator_accuracy", "discriminator_loss",
                   "discriminator_accuracy", "discriminator_precision", "discriminator_recall",
                   "discriminator_auc", "replaced_fraction", "representation_cosine")
MLM_METRICS = ("loss", "generator_loss", "generator_accuracy", "representation_cosine")


def special_token_ids(tokenizer_or_ids: Any) -> dict[str, int]:
    """``{"[MASK]": id, "[CLS]": id, "[SEP]": id, ...}`` from a Tokenizer or such a dict."""
    if isinstance(tokenizer_or_ids, Mapping):
        ids = dict(tokenizer_or_ids)
    else:
        ids = tokenizer_or_ids.settings()["special_tokens"]
    missing = [t for t in ("[MASK]", "[CLS]", "[SEP]") if t not in ids]
    if missing:
        raise ValueError(f"special token ids lack {missing}; got {sorted(ids)}")
    return {k: int(v) for k, v in ids.items()}


@keras.saving.register_keras_serializable(package="electra_tf")
class ElectraPretrainer(keras.Model):
    """Generator + discriminator with shared embeddings, trained by a custom ``train_step``.

    Build it inside ``strategy.scope()``; every model variable exists when the constructor
    returns (the training loop restores checkpoints right after building the optimizer with
    ``optimization.build_optimizer(config.optimizer, config.train.num_steps, pretrainer, ...)``
    and passing it to ``compile``).

    Args:
      config: the full :class:`~electra_tf.config.Config` (model, generator, objective, train
        seed and accumulation, mixed precision).
      special_tokens: a ``Tokenizer`` or its ``settings()["special_tokens"]`` dict; ``[MASK]``
        is written into masked positions, ``[CLS]``/``[SEP]`` are never masked.

    Attributes (stable; they name the checkpoint objects, see docs/models.md):
      embeddings: the shared :class:`ElectraEmbeddings`.
      generator: generator :class:`ElectraEncoder` (``config.generator_model``; for
        ``objective: mlm`` the MLM encoder of width ``config.model``).
      mlm_head: :class:`MaskedLMHead` tied to ``embeddings.word_embeddings``.
      discriminator: discriminator :class:`ElectraEncoder` (None for ``objective: mlm``).
      rtd_head: :class:`ReplacedTokenHead` (None for ``objective: mlm``).

    Batches: dicts with ``token_ids``, ``segment_ids``, ``padding_mask`` (int [batch, seq]) and
    optionally ``example_index`` (int [batch]). ``train_step`` returns ``ELECTRA_METRICS`` (or
    ``MLM_METRICS``) plus ``gradient_norm``; ``test_step`` the same without ``gradient_norm``.
    """

    def __init__(self, config: Config | dict, special_tokens: Any, **kwargs):
        if isinstance(config, Mapping):
            config = from_dict({k: v for k, v in config.items() if k != "derived"})
        kwargs.setdefault("name", "electra_pretrainer")
        if config.train.mixed_precision != "float32":
            kwargs.setdefault("dtype", config.train.mixed_precision)
        super().__init__(**kwargs)
        self.config = config
        self.special_tokens = special_token_ids(special_tokens)
        seed = config.train.seed
        electra = config.objective.objective == "electra"
        dtype = self.dtype_policy

        self.embeddings = ElectraEmbeddings(
            config.model, seed=derive_seed(seed, "embeddings"), dtype=dtype, name="embeddings")
        generator_config = config.generator_model if electra else config.model
        self.generator = ElectraEncoder(
            generator_config, embeddings=self.embeddings, seed=derive_seed(seed, "generator"),
            dtype=dtype, name="generator")
        self.mlm_head = MaskedLMHead(generator_config, self.embeddings,
                                     seed=derive_seed(seed, "mlm_head"), dtype=dtype,
                                     name="mlm_head")
        self.discriminator = self.rtd_head = None
        if electra:
            self.discriminator = ElectraEncoder(
                config.model, embeddings=self.embeddings,
                seed=derive_seed(seed, "discriminator"), dtype=dtype, name="discriminator")
            self.rtd_head = ReplacedTokenHead(config.model, seed=derive_seed(seed, "rtd_head"),
                                              dtype=dtype, name="rtd_head")
        self.build()

    def build(self, input_shape=None):
        # Explicit, eager, in a fixed order: the shared embeddings first so their variables
        # are named ".../embeddings/...", and nothing is created later inside a tf.function or a
        # replica context.
        self.embeddings.build()
        for layer in (self.generator, self.discriminator):
            if layer is not None:
                layer.build()
        hidden = self.generator.model_config.hidden_size
        self.mlm_head.build((None, None, hidden), (None, None))
        if self.rtd_head is not None:
            self.rtd_head.build((None, None, self.config.model.hidden_size))
        self.built = True

    # -- what the rest of the project uses ------------------------------------------------------

    @property
    def backbone(self) -> ElectraEncoder:
        """The encoder kept for fine-tuning: the discriminator (or the MLM encoder)."""
        return self.discriminator if self.discriminator is not None else self.generator

    def masked_language_model(self) -> MaskedLanguageModel:
        """The generator encoder with its MLM head (shares variables; for saving)."""
        return MaskedLanguageModel(self.generator, self.mlm_head)

    def seed_generator_variables(self) -> dict[str, keras.Variable]:
        """Every dropout seed-generator state, keyed by its variable path.

        Keras 3 does not put seed-generator states into ``tf.train.Checkpoint``; checkpoint
        this dict as well to resume the dropout streams exactly. Empty when dropout is 0.
        """
        states = {}
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, SeededDropout) and layer.seed_generator is not None:
                states[layer.seed_generator.state.path] = layer.seed_generator.state
        return states

    def call(self, inputs, training=None):
        """The backbone's sequence output [batch, seq, hidden] (the pretrainer's own logic
        is ``train_step``)."""
        return self.backbone(inputs, training=training)

    # -- the objective --------------------------------------------------------------------------

    # The step has no data-dependent Python control flow (accumulation is an explicit
    # tf.while_loop), so AutoGraph would only cost time: about half the trace time on
    # debug_tiny (13 s → 7 s here).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        """One ELECTRA step on this replica's share of the global batch; returns global metrics."""
        step = self.optimizer.iterations
        batch, totals = self._prepare(data, sampling.MASKING_STREAM, sampling.SAMPLING_STREAM,
                                      step)
        variables = self.trainable_variables

        def grad_fn(micro_batch):
            with tf.GradientTape() as tape:
                outputs = self._objective(micro_batch, totals, training=True)
                scaled_loss = self.optimizer.scale_loss(outputs["loss"])
            # IndexedSlices (embedding gathers) are made dense by accumulate/apply_gradients.
            return tape.gradient(scaled_loss, variables), outputs

        grads, sums = accumulate_gradients(grad_fn, batch, variables,
                                           self.config.train.accumulation_steps)
        gradient_norm = apply_gradients(self.optimizer, grads, variables)
        return {**self._global_metrics(sums), "gradient_norm": gradient_norm}

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        """The objective without an update. Its randomness ignores the step, so evaluations at
        different steps score the same masks and samples."""
        batch, totals = self._prepare(data, sampling.EVAL_MASKING_STREAM,
                                      sampling.EVAL_SAMPLING_STREAM, 0)
        return self._global_metrics(self._objective(batch, totals, training=False))

    def _objective(self, batch, totals, training):
        """Steps 2-5 on a (micro-)batch that already carries its masks (step 1, ``_prepare``).

        Returns:
          float32 scalars: ``loss`` and the per-objective losses (this replica's shares of the
          global means) and the counts behind the metrics (``losses.mlm_counts``/``rtd_counts``).
        """
        inputs = {"segment_ids": batch["segment_ids"], "padding_mask": batch["padding_mask"]}
        # 2. The generator predicts the masked tokens; MLM loss at those positions only.
        generator_hidden = self.generator({**inputs, "token_ids": batch["token_ids"]},
                                          training=training)
        mlm_logits = self.mlm_head(generator_hidden, batch["positions"])
        generator_loss = losses.mlm_loss(mlm_logits, batch["labels"], batch["weights"],
                                         denominator=totals["predictions"])
        out = {"generator_loss": generator_loss,
               **losses.mlm_counts(mlm_logits, batch["labels"], batch["weights"])}
        if self.discriminator is None:
            out["loss"] = self.config.objective.generator_weight * generator_loss
            out.update(losses.cosine_sums(generator_hidden, batch["padding_mask"]))
            return out

        # 3. Replacements sampled from the generator (Gumbel-max, no gradient); or, as the
        # reference's uniform_generator control, uniformly from the vocabulary (Gumbel-max over
        # equal logits).
        sample_logits = mlm_logits
        if self.config.objective.replacements == "uniform":
            sample_logits = tf.zeros_like(mlm_logits)
        sampled = sampling.gumbel_max_sample(sample_logits, batch["sample_seeds"],
                                             self.config.objective.temperature)
        corrupted, is_replaced = sampling.replace_tokens(
            batch["original_ids"], batch["positions"], batch["weights"], sampled)
        # 4. The discriminator labels every real token: replaced (sample != original) or not.
        discriminator_hidden = self.discriminator({**inputs, "token_ids": corrupted},
                                                  training=training)
        rtd_logits = self.rtd_head(discriminator_hidden)
        discriminator_loss = losses.rtd_loss(rtd_logits, is_replaced, batch["padding_mask"],
                                             denominator=totals["tokens"])
        out["discriminator_loss"] = discriminator_loss
        # 5. loss = λ_gen · MLM + λ_disc · RTD (1 and 50).
        out["loss"] = losses.electra_loss(generator_loss, discriminator_loss,
                                          self.config.objective.generator_weight,
                                          self.config.objective.discriminator_weight)
        out.update(losses.rtd_counts(rtd_logits, is_replaced, batch["padding_mask"],
                                     batch["weights"], batch["positions"]))
        out.update(losses.rtd_histograms(rtd_logits, is_replaced, batch["padding_mask"]))
        out.update(losses.cosine_sums(discriminator_hidden, batch["padding_mask"]))
        return out

    # -- helpers ---------------------------------------------------------------------------------

    def _batch(self, data) -> dict:
        """The model inputs (int32) and ``example_index`` of a batch from a dataset."""
        if isinstance(data, (tuple, list)):  # (x,) or (x, y, w) from keras.utils.pack_x_y_...
            data = data[0]
        missing = [k for k in INPUT_KEYS if k not in data]
        if missing:
            raise KeyError(f"ElectraPretrainer batch lacks {missing}; expected {INPUT_KEYS} "
                           f"(+ optional example_index), got {sorted(data)}")
        batch = {k: tf.cast(data[k], tf.int32) for k in INPUT_KEYS}
        if "example_index" in data:
            batch["example_index"] = tf.cast(data["example_index"], tf.int32)
        else:
            local = tf.shape(batch["token_ids"])[0]
            context = tf.distribute.get_replica_context()
            replica = context.replica_id_in_sync_group if context is not None else 0
            batch["example_index"] = tf.cast(replica, tf.int32) * local + tf.range(local)
        return batch

    def _prepare(self, data, masking_stream, sampling_stream, step):
        """Step 1 (masking) on the whole local batch, before any micro-batch split.

        Returns:
          ``(batch, totals)``: ``batch`` holds ``original_ids``, the masked ``token_ids``,
          ``segment_ids``, ``padding_mask``, ``positions``, ``labels``, ``weights`` and
          ``sample_seeds``; ``totals`` the global counts that normalize the losses.
        """
        batch = self._batch(data)
        seed, objective = self.config.train.seed, self.config.objective
        masked = masking.mask_tokens(
            batch["token_ids"], batch["padding_mask"],
            sampling.example_seeds(seed, masking_stream, step, batch["example_index"]),
            max_predictions=self.config.max_predictions, mask_prob=objective.mask_prob,
            mask_token_rate=objective.mask_token_rate,
            random_token_rate=objective.random_token_rate,
            mask_id=self.special_tokens["[MASK]"], vocab_size=self.config.model.vocab_size,
            excluded_ids=(self.special_tokens["[CLS]"], self.special_tokens["[SEP]"],
                          self.special_tokens["[MASK]"]))
        prepared = {
            "original_ids": batch["token_ids"],
            "segment_ids": batch["segment_ids"],
            "padding_mask": batch["padding_mask"],
            **masked._asdict(),
            "sample_seeds": sampling.example_seeds(seed, sampling_stream, step,
                                                   batch["example_index"]),
        }
        return prepared, self._global_counts(prepared)

    @staticmethod
    def _global_counts(batch) -> dict[str, tf.Tensor]:
        """Predicted positions and non-padding tokens of the global batch (all replicas)."""
        local = tf.stack([tf.reduce_sum(batch["weights"]),
                          tf.reduce_sum(tf.cast(batch["padding_mask"], tf.float32))])
        total = _all_reduce_sum(local)
        return {"predictions": total[0], "tokens": total[1]}

    def _global_metrics(self, sums: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Global metric values from this replica's loss shares and counts."""
        # One all-reduce for every sum (scalars, the cosine sum vector, the AUC histograms).
        keys = sorted(sums)
        sizes = [sums[k].shape.num_elements() for k in keys]  # static: scalars, [H], [bins]
        flat = _all_reduce_sum(tf.concat([tf.reshape(sums[k], [-1]) for k in keys], axis=0))
        total = {k: tf.reshape(part, sums[k].shape)
                 for k, part in zip(keys, tf.split(flat, sizes))}
        metrics = {"loss": total["loss"], "generator_loss": total["generator_loss"],
                   "generator_accuracy": losses.safe_ratio(total["generator_correct"],
                                                           total["predictions"]),
                   "representation_cosine": losses.mean_cosine(total["unit_sum"],
                                                                total["unit_count"])}
        if self.discriminator is not None:
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

    def get_config(self):
        return {"name": self.name, "config": to_dict(self.config),
                "special_tokens": self.special_tokens}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _all_reduce_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum over the replicas of the current replica context (identity on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
