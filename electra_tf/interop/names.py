"""One table of names: each electra_tf variable beside its TF1, Hugging Face and keras-hub name.

Our names are the pretrainer's variable paths without the model's own name
(``discriminator/layer_0/query/kernel``, ``embeddings/word_embeddings``,
``mlm_head/output_bias``); the checkpoint keys are ``model/`` + the same path with Dense kernels
stored as ``_kernel`` (docs/models.md). Every entry also carries its shape as config keys, so a
shape mismatch can say which setting disagrees.

Hugging Face keeps the discriminator (``ElectraForPreTraining``) and the generator
(``ElectraForMaskedLM``) in two files; ``Param.hf_model`` says which. keras-hub's
``ElectraBackbone`` holds the discriminator encoder only (``Param.keras_hub`` is None elsewhere).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from electra_tf.config import Config


@dataclasses.dataclass(frozen=True)
class Dim:
    """One dimension of a variable: its size and the config setting that decides it."""

    size: int
    key: str  # "model.hidden_size=256", "generator.hidden_fraction=0.25 (width 64)", ...


@dataclasses.dataclass(frozen=True)
class Param:
    """One variable: our name, its name in each format, and its dimensions."""

    ours: str
    tf1: str
    hf: str
    hf_model: str  # "discriminator" or "generator": which Hugging Face model holds it
    keras_hub: Optional[str]
    dims: tuple[Dim, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(d.size for d in self.dims)

    @property
    def is_dense_kernel(self) -> bool:
        """A 2-D Dense kernel: [in, out] here and in TF1, [out, in] in PyTorch."""
        return self.ours.endswith("/kernel")


# Transformer layer parts: ours, TF1 (under <scope>/encoder/layer_i/), HF (under
# electra.encoder.layer.i.), keras-hub (under transformer_layer_i/).
LAYER_PARTS = (
    ("query", "attention/self/query", "attention.self.query", "self_attention_layer/query"),
    ("key", "attention/self/key", "attention.self.key", "self_attention_layer/key"),
    ("value", "attention/self/value", "attention.self.value", "self_attention_layer/value"),
    ("attention_output", "attention/output/dense", "attention.output.dense",
     "self_attention_layer/attention_output"),
    ("attention_layer_norm", "attention/output/LayerNorm", "attention.output.LayerNorm",
     "self_attention_layer_norm"),
    ("intermediate", "intermediate/dense", "intermediate.dense",
     "feedforward_intermediate_dense"),
    ("output_dense", "output/dense", "output.dense", "feedforward_output_dense"),
    ("output_layer_norm", "output/LayerNorm", "output.LayerNorm", "feedforward_layer_norm"),
)
# Our weight name → TF1 / HF suffix, for Dense and LayerNorm.
DENSE = (("kernel", "kernel", "weight"), ("bias", "bias", "bias"))
LAYER_NORM = (("gamma", "gamma", "weight"), ("beta", "beta", "bias"))


def _generator_dims(config: Config) -> tuple[Dim, Dim]:
    g, gen = config.generator, config.generator_model
    if g.hidden_size is not None:
        hidden = Dim(gen.hidden_size, f"generator.hidden_size={gen.hidden_size}")
    else:
        hidden = Dim(gen.hidden_size, f"generator.hidden_fraction={g.hidden_fraction} "
                                      f"(width {gen.hidden_size})")
    if g.intermediate_size is not None:
        ffn = Dim(gen.intermediate_size, f"generator.intermediate_size={gen.intermediate_size}")
    else:
        ffn = Dim(gen.intermediate_size, f"generator.intermediate_size unset (4 × "
                                         f"{gen.hidden_size} = {gen.intermediate_size})")
    return hidden, ffn


def _dense(ours: str, tf1: str, hf: str, hf_model: str, keras_hub: Optional[str], d_in: Dim,
           d_out: Dim) -> list[Param]:
    """A Dense layer: kernel [d_in, d_out], then bias [d_out]."""
    return [Param(f"{ours}/{o}", f"{tf1}/{t}", f"{hf}.{h}", hf_model,
                  f"{keras_hub}/{o}" if keras_hub else None, dims)
            for (o, t, h), dims in zip(DENSE, ((d_in, d_out), (d_out,)))]


def _layer_norm(ours: str, tf1: str, hf: str, hf_model: str, keras_hub: Optional[str],
                width: Dim) -> list[Param]:
    """A LayerNorm: gamma, then beta, both [width]."""
    return [Param(f"{ours}/{o}", f"{tf1}/{t}", f"{hf}.{h}", hf_model,
                  f"{keras_hub}/{o}" if keras_hub else None, (width,))
            for o, t, h in LAYER_NORM]


def _encoder(config: Config, ours: str, tf1: str, hf_model: str, keras_hub: bool,
             hidden: Dim, ffn: Dim) -> list[Param]:
    """The projection (when the widths differ) and the transformer layers of one encoder."""
    m = config.model
    emb = Dim(m.embedding_size, f"model.embedding_size={m.embedding_size}")
    params = []
    if m.embedding_size != hidden.size:
        params += _dense(f"{ours}/embeddings_project", f"{tf1}/embeddings_project",
                         "electra.embeddings_project", hf_model,
                         "embeddings_projection" if keras_hub else None, emb, hidden)
    for i in range(m.num_layers):
        for part, tf_part, hf_part, kh_part in LAYER_PARTS:
            names = (f"{ours}/layer_{i}/{part}", f"{tf1}/encoder/layer_{i}/{tf_part}",
                     f"electra.encoder.layer.{i}.{hf_part}", hf_model,
                     f"transformer_layer_{i}/{kh_part}" if keras_hub else None)
            if part.endswith("layer_norm"):
                params += _layer_norm(*names, hidden)
            else:
                params += _dense(*names, ffn if part == "output_dense" else hidden,
                                 ffn if part == "intermediate" else hidden)
    return params


def parameters(config: Config, generator: bool = True, rtd_head: bool = True) -> list[Param]:
    """Every variable of the pretrainer that ``config`` builds, in a fixed order.

    Args:
      config: the model's config (sizes, generator width).
      generator: include the generator encoder and its MLM head.
      rtd_head: include the discriminator's replaced-token head.
    """
    m = config.model
    vocab = Dim(m.vocab_size, f"model.vocab_size={m.vocab_size}")
    emb = Dim(m.embedding_size, f"model.embedding_size={m.embedding_size}")
    hidden = Dim(m.hidden_size, f"model.hidden_size={m.hidden_size}")
    ffn = Dim(m.intermediate_size, f"model.intermediate_size={m.intermediate_size}")
    positions = Dim(m.max_position_embeddings,
                    f"model.max_position_embeddings={m.max_position_embeddings}")
    segments = Dim(m.type_vocab_size, f"model.type_vocab_size={m.type_vocab_size}")
    one = Dim(1, "one logit per token")

    params = [
        Param("embeddings/word_embeddings", "electra/embeddings/word_embeddings",
              "electra.embeddings.word_embeddings.weight", "discriminator",
              "token_embedding/embeddings", (vocab, emb)),
        Param("embeddings/position_embeddings", "electra/embeddings/position_embeddings",
              "electra.embeddings.position_embeddings.weight", "discriminator",
              "position_embedding/embeddings", (positions, emb)),
        Param("embeddings/segment_embeddings", "electra/embeddings/token_type_embeddings",
              "electra.embeddings.token_type_embeddings.weight", "discriminator",
              "segment_embedding/embeddings", (segments, emb)),
    ]
    params += _layer_norm("embeddings/layer_norm", "electra/embeddings/LayerNorm",
                          "electra.embeddings.LayerNorm", "discriminator",
                          "embeddings_layer_norm", emb)
    params += _encoder(config, "discriminator", "electra", "discriminator", True, hidden, ffn)
    if rtd_head:
        params += _dense("rtd_head/dense", "discriminator_predictions/dense",
                         "discriminator_predictions.dense", "discriminator", None, hidden, hidden)
        params += _dense("rtd_head/logits", "discriminator_predictions/dense_1",
                         "discriminator_predictions.dense_prediction", "discriminator", None,
                         hidden, one)
    if generator:
        g_hidden, g_ffn = _generator_dims(config)
        params += _encoder(config, "generator", "generator", "generator", False, g_hidden, g_ffn)
        params += _dense("mlm_head/dense", "generator_predictions/dense",
                         "generator_predictions.dense", "generator", None, g_hidden, emb)
        params += _layer_norm("mlm_head/layer_norm", "generator_predictions/LayerNorm",
                              "generator_predictions.LayerNorm", "generator", None, emb)
        params.append(Param("mlm_head/output_bias", "generator_predictions/output_bias",
                            "generator_lm_head.bias", "generator", None, (vocab,)))
    return params


def hf_generator_embedding_names() -> dict[str, str]:
    """The generator file's copy of the shared embeddings: HF name → our name."""
    names = {"electra.embeddings.word_embeddings.weight": "embeddings/word_embeddings",
             "electra.embeddings.position_embeddings.weight": "embeddings/position_embeddings",
             "electra.embeddings.token_type_embeddings.weight": "embeddings/segment_embeddings"}
    for o, _, h in LAYER_NORM:
        names[f"electra.embeddings.LayerNorm.{h}"] = f"embeddings/layer_norm/{o}"
    return names


_LAYER = re.compile(r"layer[_.](\d+)")


def unmapped_reason(name: str, config: Config) -> str:
    """Why a source variable has no place in the model ``config`` describes."""
    match, layers = _LAYER.search(name), config.model.num_layers
    if match and int(match.group(1)) >= layers:
        return f"layer {match.group(1)} does not exist with model.num_layers={layers}"
    if "embeddings_project" in name or "embeddings_projection" in name:
        return (f"no projection exists when model.embedding_size={config.model.embedding_size} "
                "equals the encoder's hidden size")
    return "no electra_tf variable corresponds to it"
