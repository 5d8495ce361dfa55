"""keras-hub ``ElectraBackbone`` presets in and out (the discriminator encoder only).

keras-hub's attention kernels are ``EinsumDense`` [hidden, heads, head_size] (output:
[heads, head_size, hidden]); ours are [hidden, hidden]: a reshape, bitwise both ways. keras-hub
hard-codes the tanh GELU and LayerNorm epsilon 1e-12, and has a ``pooled_dense`` layer that
ELECTRA does not have (dropped on import, zeros on export).
"""

from __future__ import annotations

import json
import os

import numpy as np

from electra_tf.config import Config
from electra_tf.interop import errors, model_io, names

BACKBONE = "ElectraBackbone"
VOCABULARY = os.path.join("assets", "tokenizer", "vocabulary.txt")
ATTENTION_IN = ("query", "key", "value")


def read_source(source: str) -> tuple[list[str], dict]:
    """``--set`` items describing the preset's backbone, and ``{"lower_case", "vocab"}``."""
    path = os.path.join(source, "config.json")
    if not os.path.exists(path):
        raise errors.ConvertError([f"{path}: missing (a keras-hub preset directory has "
                                   "config.json, written by save_to_preset)"])
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("class_name") != BACKBONE:
        raise errors.ConvertError([f"{path}: class_name {data.get('class_name')!r}, "
                                   f"{BACKBONE!r} expected (a preset of another model)"])
    c = data["config"]
    sets = [f"model.vocab_size={c['vocab_size']}", f"model.num_layers={c['num_layers']}",
            f"model.num_heads={c['num_heads']}", f"model.hidden_size={c['hidden_dim']}",
            f"model.embedding_size={c['embedding_dim']}",
            f"model.intermediate_size={c['intermediate_dim']}",
            f"model.dropout_rate={c['dropout']}", f"model.attention_dropout_rate={c['dropout']}",
            f"model.max_position_embeddings={c['max_sequence_length']}",
            f"model.type_vocab_size={c.get('num_segments', 2)}",
            # What keras-hub computes; --set model.activation=gelu overrides.
            "model.activation=gelu_approximate", "model.layer_norm_epsilon=1e-12"]
    info = {"vocab": os.path.join(source, VOCABULARY)}
    tokenizer_path = os.path.join(source, "tokenizer.json")
    if os.path.exists(tokenizer_path):
        with open(tokenizer_path, encoding="utf-8") as f:
            info["lower_case"] = bool(json.load(f).get("config", {}).get("lowercase", True))
    return sets, info


def _dims(param: names.Param, config: Config) -> tuple[names.Dim, ...]:
    """The keras-hub shape of ``param`` as dimensions named by config keys."""
    m = config.model
    part = param.ours.split("/")[-2]
    if part not in ATTENTION_IN + ("attention_output",):
        return param.dims
    heads = names.Dim(m.num_heads, f"model.num_heads={m.num_heads}")
    head_size = names.Dim(m.hidden_size // m.num_heads,
                          f"model.hidden_size/model.num_heads={m.hidden_size // m.num_heads}")
    hidden = param.dims[-1]
    if part == "attention_output":
        return (heads, head_size, hidden) if param.is_dense_kernel else (hidden,)
    return (hidden, heads, head_size) if param.is_dense_kernel else (heads, head_size)


def read_keras_hub(source: str, config: Config, vocab_path: str, allow_unmapped: bool = False,
                   echo=print) -> dict[str, np.ndarray]:
    """Loads the preset's backbone with keras-hub and maps its weights to our names."""
    import keras_hub  # a dependency of the package, imported only where used

    backbone = keras_hub.models.ElectraBackbone.from_preset(source)
    tensors = {w.path: np.asarray(w.numpy()) for w in backbone.weights}
    params = [p for p in names.parameters(config, generator=False, rtd_head=False)
              if p.keras_hub is not None]
    problems: list[str] = []
    model_io.check_vocab(vocab_path, tensors["token_embedding/embeddings"].shape[0],
                         f"{source}: token_embedding/embeddings", problems)
    weights, used = model_io.collect(
        params, tensors, lambda p: p.keras_hub, lambda p: _dims(p, config),
        lambda p, v: v.reshape(p.shape), f"{source}/model.weights.h5", problems)
    dropped = [n for n in tensors if n.startswith("pooled_dense/")]
    for name in sorted(set(tensors) - used - set(dropped)):
        reason = names.unmapped_reason(name, config)
        if allow_unmapped:
            echo(f"skipped {name} ({reason})")
        else:
            problems.append(errors.unmapped(name, reason))
    model_io.raise_problems(problems, source)
    echo(f"read {source}: {len(weights)} variables (pooled_dense dropped: ELECTRA has no "
         f"pooler); model.activation={config.model.activation}")
    return weights


def export_keras_hub(config: Config, tokenizer, weights: dict[str, np.ndarray], encoder,
                     output_dir: str, echo=print):
    """Writes an ``ElectraBackbone`` + ``ElectraTokenizer`` preset into ``output_dir``.

    Args:
      encoder: our discriminator encoder holding ``weights`` (for the GELU probe).

    Returns:
      The keras-hub backbone.
    """
    import keras_hub

    m = config.model
    if m.layer_norm_epsilon != 1e-12:
        raise errors.ConvertError([f"model.layer_norm_epsilon={m.layer_norm_epsilon}: keras-hub's "
                                   "ElectraBackbone hard-codes 1e-12"])
    if m.activation == "relu":
        raise errors.ConvertError(["model.activation=relu: keras-hub's ElectraBackbone "
                                   "hard-codes the tanh GELU"])
    backbone = keras_hub.models.ElectraBackbone(
        vocab_size=m.vocab_size, num_layers=m.num_layers, num_heads=m.num_heads,
        hidden_dim=m.hidden_size, embedding_dim=m.embedding_size,
        intermediate_dim=m.intermediate_size, dropout=m.dropout_rate,
        max_sequence_length=m.max_position_embeddings, num_segments=m.type_vocab_size)
    by_path = {w.path: w for w in backbone.weights}
    params = [p for p in names.parameters(config, generator=False, rtd_head=False)
              if p.keras_hub is not None]
    for p in params:
        target = by_path.pop(p.keras_hub)
        target.assign(weights[p.ours].reshape(target.shape))
    for path, variable in by_path.items():  # pooled_dense: no ELECTRA counterpart
        if not path.startswith("pooled_dense/"):
            raise RuntimeError(f"keras-hub weight {path} has no electra_tf counterpart")
        variable.assign(np.zeros(variable.shape, np.float32))
    if m.attention_dropout_rate != m.dropout_rate:
        echo(f"note: keras-hub has one dropout rate; model.dropout_rate={m.dropout_rate} is "
             f"used, model.attention_dropout_rate={m.attention_dropout_rate} is not")
    backbone.save_to_preset(output_dir)
    keras_hub.models.ElectraTokenizer(vocabulary=tokenizer.vocab_path,
                                      lowercase=config.data.lower_case).save_to_preset(output_dir)
    if m.activation == "gelu":
        diff = probe_difference(backbone, encoder, m)
        echo(f"warning: this model uses erf GELU, keras-hub computes the tanh approximation: "
             f"sequence_output differs by up to {diff:.3g} (max abs, probe batch)")
    echo(f"wrote {output_dir} (keras_hub.models.ElectraBackbone.from_preset)")
    return backbone


def probe_batch(model_config, seed: int = 0) -> dict[str, np.ndarray]:
    """Two sequences of random ids, the second half padding in the second one."""
    length = min(16, model_config.max_position_embeddings)
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, model_config.vocab_size, size=(2, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, length // 2:] = 0
    ids[mask == 0] = 0
    segments = np.zeros_like(ids)
    segments[:, length // 4:] = 1
    return {"token_ids": ids, "segment_ids": segments * mask, "padding_mask": mask}


def probe_difference(backbone, encoder, model_config) -> float:
    """Max abs difference of the sequence outputs on the probe batch, real tokens only."""
    batch = probe_batch(model_config)
    theirs = np.asarray(backbone(batch)["sequence_output"])
    ours = np.asarray(encoder(batch))
    real = batch["padding_mask"].astype(bool)
    return float(np.max(np.abs(theirs[real] - ours[real])))
