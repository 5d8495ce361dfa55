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

:func:`build_pretrainer` is the one recipe from a config to networks, seeds and settings:
training, ``models.pretrained.load_generator`` and checkpoint conversion all build with it.

Distribution contract (the training loop calls ``strategy.run(pretrainer.train_step, ...)``):

* randomness is keyed on ``(settings.seed, step, example_index)`` with ``step =
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

import dataclasses
from typing import Any, Mapping, Optional

import keras
import tensorflow as tf

from electra_tf.config import Config
from electra_tf.models.embeddings import ElectraEmbeddings
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.models.heads import MaskedLanguageModel, MaskedLMHead, ReplacedTokenHead
from electra_tf.models.layers import (SeededDropout, derive_seed, deserialize_nested,
                                      serialize_nested)
from electra_tf.objective import losses, masking, sampling, step_metrics
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


@dataclasses.dataclass(frozen=True)
class ObjectiveSettings:
    """What ``train_step`` reads besides the networks: ``train.seed`` (keys masking and
    sampling), ``train.accumulation_steps`` and the ``objective`` values of the same names
    (:class:`~electra_tf.config.ObjectiveConfig` says what they mean)."""

    seed: int
    mask_prob: float
    max_predictions: int
    mask_token_rate: float
    random_token_rate: float
    temperature: float
    replacements: str
    generator_weight: float
    discriminator_weight: float
    accumulation_steps: int


def build_pretrainer(config: Config, tokenizer: Any) -> "ElectraPretrainer":
    """The ELECTRA (or ``objective: mlm``) pretrainer of ``config``, every variable created.

    Each network's seed is ``derive_seed(train.seed, <its attribute name>)``;
    ``train.mixed_precision`` is every layer's dtype policy. Under a strategy, call it inside
    ``strategy.scope()``. ``tokenizer``: a ``Tokenizer`` or its special-token id dict.
    """
    seed = config.train.seed
    electra = config.objective.objective == "electra"
    precision = config.train.mixed_precision
    dtype = None if precision == "float32" else precision  # None: Keras' global policy

    def seeded(name: str) -> dict:
        return {"seed": derive_seed(seed, name), "dtype": dtype, "name": name}

    embeddings = ElectraEmbeddings(config.model, **seeded("embeddings"))
    generator_config = config.generator_model if electra else config.model
    generator = ElectraEncoder(generator_config, embeddings=embeddings, **seeded("generator"))
    mlm_head = MaskedLMHead(generator_config, embeddings, **seeded("mlm_head"))
    discriminator = rtd_head = None
    if electra:
        discriminator = ElectraEncoder(config.model, embeddings=embeddings,
                                       **seeded("discriminator"))
        rtd_head = ReplacedTokenHead(config.model, **seeded("rtd_head"))
    objective = config.objective
    settings = ObjectiveSettings(
        seed=seed, mask_prob=objective.mask_prob, max_predictions=config.max_predictions,
        mask_token_rate=objective.mask_token_rate,
        random_token_rate=objective.random_token_rate, temperature=objective.temperature,
        replacements=objective.replacements, generator_weight=objective.generator_weight,
        discriminator_weight=objective.discriminator_weight,
        accumulation_steps=config.train.accumulation_steps)
    return ElectraPretrainer(generator, mlm_head, discriminator, rtd_head, settings=settings,
                             special_tokens=tokenizer, dtype=dtype)


@keras.saving.register_keras_serializable(package="electra_tf")
class ElectraPretrainer(keras.Model):
    """Generator + discriminator with shared embeddings, trained by a custom ``train_step``.

    Made by :func:`build_pretrainer`. Every model variable exists when the constructor returns
    (the training loop restores checkpoints right after ``compile``).

    Args:
      generator: :class:`ElectraEncoder` whose ``embeddings`` are the shared ones.
      mlm_head: :class:`MaskedLMHead` on those embeddings.
      discriminator: :class:`ElectraEncoder` on them too; None for ``objective: mlm``.
      rtd_head: :class:`ReplacedTokenHead`; None exactly when ``discriminator`` is.
      settings: :class:`ObjectiveSettings`.
      special_tokens: a ``Tokenizer`` or its ``settings()["special_tokens"]``; ``[MASK]`` is
        written into masked positions, ``[CLS]``/``[SEP]`` are never masked.

    Pass the networks unbuilt: built here, under this model's name scope, their variable paths
    (``electra_pretrainer/generator/layer_0/...``) are those that checkpointed optimizer slots
    and seed-generator states are keyed by.

    Attributes (checkpoint object names, docs/models.md): ``embeddings`` (the shared
    :class:`ElectraEmbeddings`), ``generator``, ``mlm_head``, ``discriminator``, ``rtd_head``.

    Batches: dicts with ``token_ids``, ``segment_ids``, ``padding_mask`` (int [batch, seq]) and
    optionally ``example_index`` (int [batch]). ``train_step`` returns ``ELECTRA_METRICS`` (or
    ``MLM_METRICS``) plus ``gradient_norm``; ``test_step`` the same without ``gradient_norm``.
    """

    def __init__(self, generator: ElectraEncoder, mlm_head: MaskedLMHead,
                 discriminator: Optional[ElectraEncoder] = None,
                 rtd_head: Optional[ReplacedTokenHead] = None, *,
                 settings: ObjectiveSettings, special_tokens: Any, **kwargs):
        kwargs.setdefault("name", "electra_pretrainer")
        super().__init__(**kwargs)
        if (discriminator is None) != (rtd_head is None):
            raise ValueError("ElectraPretrainer needs both a discriminator and an rtd_head, or "
                             "neither (objective: mlm)")
        # Paper §3.2: generator and discriminator share the embeddings (one word table, also
        # the MLM head's output projection).
        for name, part in (("mlm_head", mlm_head), ("discriminator", discriminator)):
            if part is not None and part.embeddings is not generator.embeddings:
                raise ValueError(f"ElectraPretrainer: {name} does not share the generator's "
                                 "embeddings")
        # Assigned in this order: it is the order of ``variables`` (and of checkpoints).
        self.embeddings = generator.embeddings
        self.generator = generator
        self.mlm_head = mlm_head
        self.discriminator = discriminator
        self.rtd_head = rtd_head
        self.settings = settings
        self.special_tokens = special_token_ids(special_tokens)
        self.build()

    def build(self, input_shape=None):
        # Explicit, eager, in a fixed order: the shared embeddings first so their variables
        # are named ".../embeddings/...", and nothing is created later inside a tf.function or a
        # replica context.
        for layer in (self.embeddings, self.generator, self.discriminator):
            if layer is not None and not layer.built:
                layer.build()
        if not self.mlm_head.built:
            self.mlm_head.build((None, None, self.generator.model_config.hidden_size),
                                (None, None))
        if self.rtd_head is not None and not self.rtd_head.built:
            self.rtd_head.build((None, None, self.discriminator.model_config.hidden_size))
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

    def compile(self, *args, auto_scale_loss: bool = False, **kwargs):
        """Keras ``compile``; the optimizer from ``build_optimizer`` scales the loss itself.

        Keras would wrap the optimizer of a ``mixed_float16`` model in its own
        ``LossScaleOptimizer`` (a second scale); ``apply_gradients`` refuses that wrapper.
        """
        super().compile(*args, auto_scale_loss=auto_scale_loss, **kwargs)

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
                                           self.settings.accumulation_steps)
        gradient_norm = apply_gradients(self.optimizer, grads, variables)
        return {**step_metrics.global_metrics(sums), "gradient_norm": gradient_norm}

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        """The objective without an update. Its randomness ignores the step, so evaluations at
        different steps score the same masks and samples."""
        batch, totals = self._prepare(data, sampling.EVAL_MASKING_STREAM,
                                      sampling.EVAL_SAMPLING_STREAM, 0)
        return step_metrics.global_metrics(self._objective(batch, totals, training=False))

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
            out["loss"] = self.settings.generator_weight * generator_loss
            out.update(losses.cosine_sums(generator_hidden, batch["padding_mask"]))
            return out

        # 3. Replacements sampled from the generator (Gumbel-max, no gradient); or, as the
        # reference's uniform_generator control, uniformly from the vocabulary (Gumbel-max over
        # equal logits).
        sample_logits = mlm_logits
        if self.settings.replacements == "uniform":
            sample_logits = tf.zeros_like(mlm_logits)
        sampled = sampling.gumbel_max_sample(sample_logits, batch["sample_seeds"],
                                             self.settings.temperature)
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
                                          self.settings.generator_weight,
                                          self.settings.discriminator_weight)
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
        settings = self.settings
        masked = masking.mask_tokens(
            batch["token_ids"], batch["padding_mask"],
            sampling.example_seeds(settings.seed, masking_stream, step, batch["example_index"]),
            max_predictions=settings.max_predictions, mask_prob=settings.mask_prob,
            mask_token_rate=settings.mask_token_rate,
            random_token_rate=settings.random_token_rate,
            mask_id=self.special_tokens["[MASK]"],
            vocab_size=self.embeddings.model_config.vocab_size,
            excluded_ids=(self.special_tokens["[CLS]"], self.special_tokens["[SEP]"],
                          self.special_tokens["[MASK]"]))
        prepared = {
            "original_ids": batch["token_ids"],
            "segment_ids": batch["segment_ids"],
            "padding_mask": batch["padding_mask"],
            **masked._asdict(),
            "sample_seeds": sampling.example_seeds(settings.seed, sampling_stream, step,
                                                   batch["example_index"]),
        }
        return prepared, step_metrics.global_counts(prepared)

    def get_config(self):
        config = super().get_config()
        config.update({**serialize_nested(generator=self.generator, mlm_head=self.mlm_head,
                                          discriminator=self.discriminator,
                                          rtd_head=self.rtd_head),
                       "settings": dataclasses.asdict(self.settings),
                       "special_tokens": self.special_tokens})
        return config

    @classmethod
    def from_config(cls, config):
        config = deserialize_nested(config, "generator", "mlm_head", "discriminator",
                                    "rtd_head")
        config["settings"] = ObjectiveSettings(**config["settings"])
        return cls(**config)
