"""Hugging Face ``transformers`` ELECTRA: ``config.json`` + ``model.safetensors`` in and out.

No PyTorch: tensors go through ``safetensors.numpy``. The discriminator is an
``ElectraForPreTraining`` (or ``ElectraModel``, whose keys lack ``electra.``), the generator an
``ElectraForMaskedLM`` whose embeddings are the discriminator's (ELECTRA shares them).
PyTorch ``Linear`` weights are [out, in]: every Dense kernel is transposed, nothing else changes,
so a round trip is bitwise.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import numpy as np
from safetensors.numpy import load_file, save_file

from electra_tf.config import Config
from electra_tf.interop import errors, model_io, names

WEIGHTS = "model.safetensors"
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate",
               "gelu_pytorch_tanh": "gelu_approximate", "relu": "relu"}
EXPORT_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}
ARCHITECTURES = ("ElectraForPreTraining", "ElectraModel", "ElectraForMaskedLM")
# Read, never mapped: a buffer older transformers versions saved, and the tied output layer.
BUFFERS = ("electra.embeddings.position_ids",)
TIED = "generator_lm_head.weight"
# The layout of transformers' save_pretrained (4.57; the fixtures in tests/data/interop).
TRANSFORMERS_VERSION = "4.57.6"


def _read_config(directory: str, problems: list[str]) -> Optional[dict]:
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        problems.append(f"{path}: missing (a Hugging Face model directory has config.json)")
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("model_type") != "electra":
        problems.append(f"{path}: model_type {data.get('model_type')!r}, 'electra' expected "
                        "(this is not an ELECTRA model)")
        return None
    if data.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"{path}: position_embedding_type {data['position_embedding_type']!r};"
                        " electra_tf has absolute position embeddings only")
    if data.get("hidden_act") not in ACTIVATIONS:
        problems.append(f"{path}: hidden_act {data.get('hidden_act')!r} (model.activation) is "
                        f"not one of {', '.join(ACTIVATIONS)}")
    return data


def _read_tensors(directory: str, problems: list[str]) -> Optional[dict]:
    path = os.path.join(directory, WEIGHTS)
    if not os.path.exists(path):
        if os.path.exists(os.path.join(directory, "pytorch_model.bin")):
            problems.append(f"{directory}: only pytorch_model.bin, no {WEIGHTS}; save it with "
                            "safetensors (model.save_pretrained(dir, safe_serialization=True)) "
                            "— pickled PyTorch files are not read")
        else:
            problems.append(f"{path}: missing")
        return None
    tensors = load_file(path)
    if not any(k.startswith("electra.") for k in tensors):  # ElectraModel
        tensors = {(f"electra.{k}" if k.split(".")[0] in ("embeddings", "encoder",
                                                          "embeddings_project") else k): v
                   for k, v in tensors.items()}
    return tensors


def config_overrides(disc: dict, gen: Optional[dict], path: str,
                     problems: list[str]) -> list[str]:
    """``--set`` items that describe the model of ``config.json`` (and the generator's)."""
    sets = [f"model.vocab_size={disc['vocab_size']}", f"model.hidden_size={disc['hidden_size']}",
            f"model.num_layers={disc['num_hidden_layers']}",
            f"model.num_heads={disc['num_attention_heads']}",
            f"model.intermediate_size={disc['intermediate_size']}",
            f"model.embedding_size={disc['embedding_size']}",
            f"model.max_position_embeddings={disc['max_position_embeddings']}",
            f"model.type_vocab_size={disc['type_vocab_size']}",
            f"model.dropout_rate={disc['hidden_dropout_prob']}",
            f"model.attention_dropout_rate={disc['attention_probs_dropout_prob']}",
            f"model.activation={ACTIVATIONS.get(disc['hidden_act'], disc['hidden_act'])}",
            f"model.layer_norm_epsilon={disc['layer_norm_eps']}",
            f"model.initializer_range={disc['initializer_range']}"]
    if gen is not None:
        # Our generator shares everything but its width with the discriminator.
        for key, ours in (("num_hidden_layers", "model.num_layers"),
                          ("embedding_size", "model.embedding_size"),
                          ("vocab_size", "model.vocab_size"),
                          ("max_position_embeddings", "model.max_position_embeddings"),
                          ("type_vocab_size", "model.type_vocab_size"),
                          ("hidden_act", "model.activation"),
                          ("layer_norm_eps", "model.layer_norm_epsilon")):
            if gen.get(key) != disc.get(key):
                problems.append(f"{path}: generator {key} {gen.get(key)!r} differs from the "
                                f"discriminator's {disc.get(key)!r}; electra_tf's generator "
                                f"takes {ours} from the discriminator")
        sets += [f"generator.hidden_size={gen['hidden_size']}",
                 f"generator.num_heads={gen['num_attention_heads']}",
                 f"generator.intermediate_size={gen['intermediate_size']}"]
    return sets


def read_source(source: str, generator: Optional[str]) -> tuple[list[str], dict]:
    """Reads the config(s) of ``source`` and ``generator`` into ``--set`` items.

    Returns:
      ``(sets, info)``; ``info["lower_case"]`` is ``do_lower_case`` of tokenizer_config.json
      when present. Raises ConvertError for configs of another model.
    """
    problems: list[str] = []
    disc = _read_config(source, problems)
    gen = _read_config(generator, problems) if generator else None
    info: dict = {}
    if disc is not None:
        arch = (disc.get("architectures") or ["ElectraModel"])[0]
        if arch == "ElectraForMaskedLM":
            problems.append(f"{source}: an ElectraForMaskedLM (a generator); pass the "
                            "discriminator as SRC and this directory as --generator")
        elif arch not in ARCHITECTURES:
            problems.append(f"{source}/config.json: architectures {arch!r}; "
                            f"{', '.join(ARCHITECTURES)} can be imported")
    if gen is not None and (gen.get("architectures") or [""])[0] != "ElectraForMaskedLM":
        problems.append(f"{generator}/config.json: architectures {gen.get('architectures')}, "
                        "ElectraForMaskedLM expected for --generator")
    if problems or disc is None:
        raise errors.ConvertError(problems, source)
    sets = config_overrides(disc, gen, generator or source, problems)
    model_io.raise_problems(problems, source)
    tokenizer_config = os.path.join(source, "tokenizer_config.json")
    if os.path.exists(tokenizer_config):
        with open(tokenizer_config, encoding="utf-8") as f:
            lower = json.load(f).get("do_lower_case")
        if lower is not None:
            info["lower_case"] = bool(lower)
    return sets, info


def _hf_dims(param: names.Param):
    return param.dims[::-1] if param.is_dense_kernel else param.dims


def _to_ours(param: names.Param, value: np.ndarray) -> np.ndarray:
    return value.T if param.is_dense_kernel else value


def read_hf(source: str, generator: Optional[str], config: Config, vocab_path: str,
            allow_unmapped: bool = False, echo=print) -> dict[str, np.ndarray]:
    """Reads and checks the safetensors of ``source`` (and ``generator``) against ``config``.

    Raises:
      ConvertError: every problem found.
    """
    problems: list[str] = []
    files = {"discriminator": _read_tensors(source, problems)}
    if generator:
        files["generator"] = _read_tensors(generator, problems)
    if any(v is None for v in files.values()):
        raise errors.ConvertError(problems, source)
    has_rtd = any(k.startswith("discriminator_predictions.") for k in files["discriminator"])
    params = names.parameters(config, generator=bool(generator), rtd_head=has_rtd)
    weights = {}
    for model, tensors in files.items():
        where = os.path.join(source if model == "discriminator" else generator, WEIGHTS)
        found, used = model_io.collect(
            [p for p in params if p.hf_model == model], tensors, lambda p: p.hf, _hf_dims,
            _to_ours, where, problems)
        weights.update(found)
        if model == "generator":
            used |= _check_shared(tensors, weights, where, problems)
        if model == "discriminator":
            word = tensors.get("electra.embeddings.word_embeddings.weight")
            model_io.check_vocab(vocab_path, None if word is None else word.shape[0],
                                 f"{where}: electra.embeddings.word_embeddings.weight",
                                 problems)
        for name in sorted(set(tensors) - used - set(BUFFERS)):
            reason = names.unmapped_reason(name, config)
            if allow_unmapped:
                echo(f"skipped {where}: {name} ({reason})")
            else:
                problems.append(errors.unmapped(f"{where}: {name}", reason))
    model_io.raise_problems(problems, source)
    if generator and config.model.activation != "gelu":
        echo("note: transformers' ElectraForMaskedLM head always applies erf GELU; electra_tf's "
             f"MLM head uses model.activation={config.model.activation}, so MLM logits differ "
             "slightly from transformers'")
    echo(f"read {source}" + (f" and {generator}" if generator else "")
         + f": {len(weights)} variables")
    return weights


def _check_shared(tensors: dict, weights: dict, where: str, problems: list[str]) -> set[str]:
    """The generator file's embeddings (and tied output layer) must be the discriminator's."""
    used = set()
    pairs = dict(names.hf_generator_embedding_names())
    pairs[TIED] = "embeddings/word_embeddings"
    for name, ours in pairs.items():
        if name not in tensors:
            continue
        used.add(name)
        if ours in weights and not np.array_equal(tensors[name], weights[ours]):
            diff = (float(np.max(np.abs(tensors[name] - weights[ours])))
                    if tensors[name].shape == weights[ours].shape else "shape")
            problems.append(f"{where}: {name} differs from the discriminator's (max abs "
                            f"difference {diff}); ELECTRA shares the embeddings ({ours})")
    return used


# -- export ------------------------------------------------------------------------------------

def _config_json(config: Config, model_config, architecture: str, pad_id: int) -> dict:
    m = model_config
    return {
        "architectures": [architecture],
        "attention_probs_dropout_prob": m.attention_dropout_rate,
        "classifier_dropout": None,
        "dtype": "float32",
        "embedding_size": m.embedding_size,
        "hidden_act": EXPORT_ACTIVATIONS[m.activation],
        "hidden_dropout_prob": m.dropout_rate,
        "hidden_size": m.hidden_size,
        "initializer_range": m.initializer_range,
        "intermediate_size": m.intermediate_size,
        "layer_norm_eps": m.layer_norm_epsilon,
        "max_position_embeddings": m.max_position_embeddings,
        "model_type": "electra",
        "num_attention_heads": m.num_heads,
        "num_hidden_layers": m.num_layers,
        "pad_token_id": pad_id,
        "position_embedding_type": "absolute",
        "summary_activation": "gelu",
        "summary_last_dropout": 0.1,
        "summary_type": "first",
        "summary_use_proj": True,
        "transformers_version": TRANSFORMERS_VERSION,
        "type_vocab_size": m.type_vocab_size,
        "use_cache": True,
        "vocab_size": m.vocab_size,
    }


def _write(directory: str, tensors: dict, config_json: dict, tokenizer, lower_case: bool):
    os.makedirs(directory, exist_ok=True)
    # {"format": "pt"}: some transformers versions refuse safetensors without it.
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              os.path.join(directory, WEIGHTS), metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config_json, f, indent=2, sort_keys=True)
    shutil.copyfile(tokenizer.vocab_path, os.path.join(directory, "vocab.txt"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"do_lower_case": lower_case, "tokenizer_class": "ElectraTokenizer",
                   "model_max_length": config_json["max_position_embeddings"],
                   "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                   "sep_token": "[SEP]", "mask_token": "[MASK]"}, f, indent=2, sort_keys=True)


def export_hf(config: Config, tokenizer, weights: dict[str, np.ndarray], output_dir: str,
              echo=print) -> list[str]:
    """Writes ``OUT/discriminator`` (and ``OUT/generator`` when ``weights`` hold one).

    Returns:
      The directories written.
    """
    has_rtd = "rtd_head/logits/kernel" in weights
    has_generator = "mlm_head/output_bias" in weights
    params = names.parameters(config, generator=has_generator, rtd_head=has_rtd)
    files: dict[str, dict] = {"discriminator": {}, "generator": {}}
    shared = {ours: hf for hf, ours in names.hf_generator_embedding_names().items()}
    for p in params:
        value = _to_ours(p, weights[p.ours])  # a transpose is its own inverse
        name = p.hf if has_rtd or p.hf_model == "generator" else p.hf[len("electra."):]
        files[p.hf_model][name] = value
        if has_generator and p.ours in shared:
            files["generator"][shared[p.ours]] = value
    written = []
    disc_arch = "ElectraForPreTraining" if has_rtd else "ElectraModel"
    if not has_rtd:
        echo(f"no replaced-token head in the model directory (no ckpt-*): wrote an ElectraModel"
             " (encoder only), not an ElectraForPreTraining")
    lower = config.data.lower_case
    path = os.path.join(output_dir, "discriminator")
    _write(path, files["discriminator"],
           _config_json(config, config.model, disc_arch, tokenizer.pad_id), tokenizer, lower)
    written.append(path)
    if has_generator:
        path = os.path.join(output_dir, "generator")
        _write(path, files["generator"], _config_json(config, config.generator_model,
                                                      "ElectraForMaskedLM", tokenizer.pad_id),
               tokenizer, lower)
        written.append(path)
        if config.model.activation == "gelu_approximate":
            echo("warning: transformers' ElectraForMaskedLM head always applies erf GELU; this "
                 "model's MLM head uses the tanh approximation, so generator logits differ "
                 "slightly in transformers")
    for path in written:
        echo(f"wrote {path}")
    return written
