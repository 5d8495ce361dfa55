"""Generate tests/data/interop/: reference checkpoints for ``python -m electra_tf.convert``.

One tiny ELECTRA (generator + discriminator, shared embeddings) with seeded random weights,
written by the tools users convert from and to, plus the outputs those tools compute for it:

  hf_discriminator/   ``ElectraForPreTraining.save_pretrained`` (config.json, model.safetensors)
                      and ``ElectraTokenizer.save_pretrained`` (vocab.txt, tokenizer_config.json,
                      special_tokens_map.json); hidden_act "gelu".
  hf_generator/       ``ElectraForMaskedLM`` the same way; its embeddings equal the
                      discriminator's (ELECTRA ties them), ``generator_lm_head.weight`` is tied to
                      the word embeddings, so save_pretrained leaves it out.
  tf1/                ``model.ckpt-1234.{index,data-00000-of-00001}`` + ``checkpoint``, written by
                      ``tf.compat.v1.train.Saver`` with the variable names of
                      google-research/electra (``electra/...``, ``generator/...``,
                      ``generator_predictions/...``, ``discriminator_predictions/...``), an
                      ``adam_m`` and ``adam_v`` slot for every variable and ``global_step`` (int64).
  golden.npz          inputs and outputs (see GOLDEN_KEYS below).
  vocab.txt           the 128-token WordPiece vocabulary of the model.
  versions.json       the versions that wrote the files, and what each golden array is.

The weights are drawn once, by numpy, keyed on the TF1 variable name, and written into both
formats; the TF1 checkpoint is then read back with transformers' own
``load_tf_weights_in_electra`` (discriminator into ``ElectraForPreTraining``, generator into
``ElectraForMaskedLM``) and must give the HF fixtures' parameters bit for bit and their outputs
within 1e-6: the two formats hold one model, as transformers maps them.

Golden outputs are computed in float64 (``model.double()``) and stored as float32, so torch and
BLAS versions change them by at most one float32 rounding step.

Environment: a separate virtualenv with torch, transformers 4.x (version 5 removed the TensorFlow
checkpoint loaders), TensorFlow 2.20 and safetensors; ``make test-interop`` builds it
(``tools/interop_env.sh``) and runs ``--check``. By hand, from the repository root::

    .venv-interop/bin/python tests/data/make_interop_fixtures.py            # rewrite
    .venv-interop/bin/python tests/data/make_interop_fixtures.py --check    # compare

``--check`` writes the fixtures into a temporary directory and compares them with the committed
ones (tensors within 1e-6, JSON equal apart from ``transformers_version``, text files equal); it
exits 1 and lists every difference otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(_HERE, "interop")

SEED = 14  # the issue number
GLOBAL_STEP = 1234
WEIGHT_STD = 0.3  # large enough that erf and tanh GELU give measurably different outputs
LAYER_NORM_GAMMA_STD = 0.1  # gammas 1 + N(0, 0.1)
SLOT_STD = 0.01
TOLERANCE = 1e-6

# The model, in transformers' ElectraConfig names. electra_tf --set equivalents in README.md.
DISCRIMINATOR = dict(vocab_size=128, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                     type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1, initializer_range=0.02, pad_token_id=0)
GENERATOR = dict(DISCRIMINATOR, hidden_size=32, num_attention_heads=2, intermediate_size=64)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# 123 lowercase entries after the special tokens; "##" pieces let words split as WordPiece does.
WORDS = (
    ". , ! ? ' - ( ) : ; 0 1 2 3 "
    "a an the this that it he she they we you i is was are be been has had have do did "
    "and or but not no of to in on at by for with from up down over under "
    "cat dog fox bird fish man woman child day night sun moon sea ship whale captain "
    "book word text model token small large quick brown lazy red old new good "
    "run jump swim read write see say make take find "
    "##s ##ed ##ing ##er ##ly ##est ##y ##ness ##ful "
    "electra pre train ##ment ##ation ##al ##ish ##ize sail ##or wind "
    "ahab long ago year mind how some call me"
).split()
VOCAB = SPECIAL_TOKENS + WORDS

# (text_a, text_b): one full row with a second segment, one padded pair, one padded single text.
TEXTS = (("The quick fox jumps.", "Dogs swim"),
         ("Models read.", "We sail."),
         ("Captain Ahab sailed the sea!", None))
SEQ_LENGTH = 12

ACTIVATIONS = ("gelu", "gelu_new")
GOLDEN_KEYS = {
    "token_ids": "int32 [3, 12]: [CLS] a [SEP] (b [SEP]), 0 = [PAD] after the text",
    "segment_ids": "int32 [3, 12]: 1 on text b and its [SEP], else 0",
    "padding_mask": "int32 [3, 12]: 1 on tokens, 0 on padding",
}
for _act in ACTIVATIONS:
    _head = "erf GELU" if _act == "gelu" else "tanh GELU"
    GOLDEN_KEYS.update({
        f"disc_hidden_{_act}": f"float32 [3, 12, 32]: discriminator last hidden state, "
                               f"hidden_act={_act}",
        f"rtd_logits_{_act}": f"float32 [3, 12]: ElectraForPreTraining logits, hidden_act={_act} "
                              f"(encoder and discriminator_predictions: {_head})",
        f"gen_hidden_{_act}": f"float32 [3, 12, 32]: generator last hidden state, "
                              f"hidden_act={_act}",
        f"mlm_logits_{_act}": f"float32 [3, 12, 128]: ElectraForMaskedLM logits, hidden_act={_act}"
                              f" (encoder: {_head}; generator_predictions: erf GELU, which "
                              "transformers hard-codes)",
    })
GOLDEN_KEYS["mlm_logits_gelu_new_tanh_head"] = (
    "float32 [3, 12, 128]: as mlm_logits_gelu_new but generator_predictions also uses tanh "
    "GELU, i.e. one activation everywhere (what electra_tf computes with "
    "model.activation=gelu_approximate)")


# ---------------------------------------------------------------------------------------------
# Weights, by TF1 (google-research/electra) name.

def tf1_shapes() -> dict[str, tuple[int, ...]]:
    """Every trained variable of the reference pretraining graph and its shape."""
    d, g = DISCRIMINATOR, GENERATOR
    vocab, emb = d["vocab_size"], d["embedding_size"]
    shapes = {
        "electra/embeddings/word_embeddings": (vocab, emb),
        "electra/embeddings/position_embeddings": (d["max_position_embeddings"], emb),
        "electra/embeddings/token_type_embeddings": (d["type_vocab_size"], emb),
        "electra/embeddings/LayerNorm/gamma": (emb,),
        "electra/embeddings/LayerNorm/beta": (emb,),
    }

    def dense(name, d_in, d_out):
        shapes[f"{name}/kernel"] = (d_in, d_out)
        shapes[f"{name}/bias"] = (d_out,)

    def layer_norm(name, width):
        shapes[f"{name}/gamma"] = (width,)
        shapes[f"{name}/beta"] = (width,)

    for scope, cfg in (("electra", d), ("generator", g)):
        hidden, ffn = cfg["hidden_size"], cfg["intermediate_size"]
        if emb != hidden:  # modeling.BertModel: one projection per model when widths differ
            dense(f"{scope}/embeddings_project", emb, hidden)
        for i in range(cfg["num_hidden_layers"]):
            layer = f"{scope}/encoder/layer_{i}"
            for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                         "attention/output/dense"):
                dense(f"{layer}/{part}", hidden, hidden)
            layer_norm(f"{layer}/attention/output/LayerNorm", hidden)
            dense(f"{layer}/intermediate/dense", hidden, ffn)
            dense(f"{layer}/output/dense", ffn, hidden)
            layer_norm(f"{layer}/output/LayerNorm", hidden)
    # run_pretraining.py: _get_discriminator_output and _get_masked_lm_output.
    dense("discriminator_predictions/dense", d["hidden_size"], d["hidden_size"])
    dense("discriminator_predictions/dense_1", d["hidden_size"], 1)
    dense("generator_predictions/dense", g["hidden_size"], emb)
    layer_norm("generator_predictions/LayerNorm", emb)
    shapes["generator_predictions/output_bias"] = (vocab,)
    return shapes


def _rng(name: str) -> np.random.Generator:
    """A generator of its own for every name: adding a variable changes no other value."""
    digest = hashlib.sha256(name.encode()).digest()
    return np.random.default_rng([SEED, int.from_bytes(digest[:8], "little")])


def draw_weights(shapes: dict) -> dict[str, np.ndarray]:
    weights = {}
    for name, shape in shapes.items():
        normal = _rng(name).standard_normal(shape)
        if name.endswith("/gamma"):
            value = 1.0 + LAYER_NORM_GAMMA_STD * normal
        else:
            value = WEIGHT_STD * normal
        weights[name] = value.astype(np.float32)
    return weights


def draw_slots(shapes: dict) -> dict[str, np.ndarray]:
    """AdamWeightDecayOptimizer's ``<var>/adam_m`` and ``<var>/adam_v`` (v > 0)."""
    slots = {}
    for name, shape in shapes.items():
        slots[f"{name}/adam_m"] = (SLOT_STD * _rng(f"{name}/adam_m").standard_normal(shape)
                                   ).astype(np.float32)
        slots[f"{name}/adam_v"] = np.square(
            SLOT_STD * _rng(f"{name}/adam_v").standard_normal(shape)).astype(np.float32)
    return slots


def hf_name(tf1: str) -> tuple[str, str, bool]:
    """TF1 name → (which HF model, HF parameter name, transpose?).

    Written from the two layouts, not from transformers' loader, so the check against
    ``load_tf_weights_in_electra`` below compares two independent mappings.
    """
    if tf1.startswith("discriminator_predictions/"):
        model = "discriminator"
        path = tf1.replace("dense_1", "dense_prediction")
    elif tf1.startswith("generator_predictions/"):
        model = "generator"
        path = tf1.replace("generator_predictions/output_bias", "generator_lm_head/bias")
    elif tf1.startswith("generator/"):
        model, path = "generator", "electra/" + tf1[len("generator/"):]
    else:
        model, path = "discriminator", tf1  # electra/...: the discriminator's
    parts = path.split("/")
    leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias"}.get(parts[-1], parts[-1])
    if parts[-1].endswith("_embeddings"):
        parts.append("weight")
    else:
        parts[-1] = leaf
    dotted = ".".join(p.replace("layer_", "layer.") if p.startswith("layer_") else p
                      for p in parts)
    return model, dotted, tf1.endswith("/kernel")


def hf_state_dicts(weights: dict) -> dict[str, dict]:
    """The two HF state dicts (torch tensors); the generator also gets the shared embeddings."""
    import torch

    states = {"discriminator": {}, "generator": {}}
    for name, value in weights.items():
        model, key, transpose = hf_name(name)
        tensor = torch.from_numpy(np.ascontiguousarray(value.T if transpose else value))
        states[model][key] = tensor
        if name.startswith("electra/embeddings/"):
            states["generator"][key] = tensor.clone()
    return states


# ---------------------------------------------------------------------------------------------
# Writers.

def hf_config(which: str, activation: str = "gelu"):
    from transformers import ElectraConfig

    return ElectraConfig(**(DISCRIMINATOR if which == "discriminator" else GENERATOR),
                         hidden_act=activation)


def build_hf(which: str, state: dict, activation: str = "gelu"):
    """An HF model of ``which`` holding ``state``; every parameter must come from ``state``."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    cls = ElectraForPreTraining if which == "discriminator" else ElectraForMaskedLM
    model = cls(hf_config(which, activation)).eval()
    result = model.load_state_dict(state, strict=False)
    tied = {"generator_lm_head.weight"} if which == "generator" else set()
    if set(result.missing_keys) != tied or result.unexpected_keys:
        raise AssertionError(f"{which}: missing {result.missing_keys}, "
                             f"unexpected {result.unexpected_keys}")
    if which == "generator":
        assert model.generator_lm_head.weight is model.electra.embeddings.word_embeddings.weight
    return model


def write_vocab(path: str) -> None:
    assert len(VOCAB) == DISCRIMINATOR["vocab_size"] == len(set(VOCAB)), len(VOCAB)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")


def write_tf1(directory: str, weights: dict, slots: dict) -> str:
    """A TF1 Saver checkpoint as run_pretraining.py leaves it; returns its prefix."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in sorted({**weights, **slots}.items()):
            tf.compat.v1.get_variable(name, initializer=tf.constant(value), trainable=False)
        step = tf.compat.v1.train.get_or_create_global_step()
        # Relative paths in the `checkpoint` file: the directory can move.
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(step.assign(GLOBAL_STEP))
            # No .meta graph: the loaders read only the variables, and it would triple the size.
            return saver.save(session, os.path.join(directory, "model.ckpt"),
                              global_step=GLOBAL_STEP, write_meta_graph=False)


def encode_inputs(vocab_path: str) -> dict[str, np.ndarray]:
    from transformers import ElectraTokenizer

    tokenizer = ElectraTokenizer(vocab_path, do_lower_case=True)
    rows = {"token_ids": [], "segment_ids": [], "padding_mask": []}
    for text_a, text_b in TEXTS:
        enc = tokenizer(text_a, text_b, max_length=SEQ_LENGTH, padding="max_length",
                        truncation=False)
        if len(enc["input_ids"]) != SEQ_LENGTH:
            raise AssertionError(f"{text_a!r} / {text_b!r}: {len(enc['input_ids'])} tokens")
        if tokenizer.unk_token_id in enc["input_ids"]:
            raise AssertionError(f"{text_a!r} / {text_b!r}: [UNK] in {enc['input_ids']}")
        rows["token_ids"].append(enc["input_ids"])
        rows["segment_ids"].append(enc["token_type_ids"])
        rows["padding_mask"].append(enc["attention_mask"])
    inputs = {k: np.asarray(v, np.int32) for k, v in rows.items()}
    mask = inputs["padding_mask"]
    assert (mask == 0).any() and (mask == 1).all(axis=1).any(), mask
    assert (inputs["segment_ids"] == 1).any()
    assert (inputs["token_ids"][mask == 0] == 0).all()
    return inputs


def golden_outputs(states: dict, inputs: dict) -> dict[str, np.ndarray]:
    """Hidden states and logits of both models for both activations, in float64."""
    import torch
    from transformers.activations import ACT2FN

    feed = dict(input_ids=torch.from_numpy(inputs["token_ids"]).long(),
                token_type_ids=torch.from_numpy(inputs["segment_ids"]).long(),
                attention_mask=torch.from_numpy(inputs["padding_mask"]).long(),
                output_hidden_states=True)
    golden = {}
    with torch.no_grad():
        for act in ACTIVATIONS:
            disc = build_hf("discriminator", states["discriminator"], act).double()
            out = disc(**feed)
            golden[f"disc_hidden_{act}"] = out.hidden_states[-1]
            golden[f"rtd_logits_{act}"] = out.logits
            gen = build_hf("generator", states["generator"], act).double()
            out = gen(**feed)
            golden[f"gen_hidden_{act}"] = out.hidden_states[-1]
            golden[f"mlm_logits_{act}"] = out.logits
            if act == "gelu_new":
                gen.generator_predictions.activation = ACT2FN["gelu_new"]
                golden["mlm_logits_gelu_new_tanh_head"] = gen(**feed).logits
    return {k: v.numpy().astype(np.float32) for k, v in golden.items()}


def check_tf1_with_transformers(prefix: str, models: dict, inputs: dict) -> None:
    """transformers' loader, reading tf1/, must rebuild the HF fixture models exactly."""
    import torch
    from transformers import ElectraForMaskedLM, ElectraForPreTraining
    from transformers.models.electra.modeling_electra import load_tf_weights_in_electra

    feed = dict(input_ids=torch.from_numpy(inputs["token_ids"]).long(),
                token_type_ids=torch.from_numpy(inputs["segment_ids"]).long(),
                attention_mask=torch.from_numpy(inputs["padding_mask"]).long())
    for which, cls in (("discriminator", ElectraForPreTraining),
                       ("generator", ElectraForMaskedLM)):
        config = hf_config(which)
        torch.manual_seed(SEED + 1)  # fresh random weights: each must be overwritten
        loaded = cls(config).eval()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per variable
            load_tf_weights_in_electra(loaded, config, prefix, discriminator_or_generator=which)
        expected, got = models[which].state_dict(), loaded.state_dict()
        differ = [k for k in expected if not torch.equal(expected[k], got[k])]
        if differ:
            raise AssertionError(f"tf1/ read by load_tf_weights_in_electra ({which}) differs "
                                 f"from hf_{which}/ in {differ}")
        with torch.no_grad():
            diff = (models[which](**feed).logits - loaded(**feed).logits).abs().max().item()
        if diff > TOLERANCE:
            raise AssertionError(f"{which}: logits differ by {diff}")


def versions() -> dict:
    import safetensors
    import tensorflow as tf
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tensorflow": tf.__version__,
        "safetensors": safetensors.__version__,
    }


def generate(out: str) -> dict:
    """Writes every fixture into ``out`` (emptied first); returns timings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  (before torch: both bundle native libraries)

    import torch

    start = time.perf_counter()
    torch.set_num_threads(1)  # the reductions' order then does not depend on the machine
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    shapes = tf1_shapes()
    weights = draw_weights(shapes)
    states = hf_state_dicts(weights)
    models = {which: build_hf(which, states[which]) for which in states}

    vocab_path = os.path.join(out, "vocab.txt")
    write_vocab(vocab_path)
    from transformers import ElectraTokenizer

    tokenizer = ElectraTokenizer(vocab_path, do_lower_case=True)
    for which, model in models.items():
        model.save_pretrained(os.path.join(out, f"hf_{which}"), safe_serialization=True)
        tokenizer.save_pretrained(os.path.join(out, f"hf_{which}"))

    prefix = write_tf1(os.path.join(out, "tf1"), weights, draw_slots(shapes))
    inputs = encode_inputs(vocab_path)
    check_tf1_with_transformers(prefix, models, inputs)

    golden = {**inputs, **golden_outputs(states, inputs)}
    assert set(golden) == set(GOLDEN_KEYS), sorted(set(golden) ^ set(GOLDEN_KEYS))
    np.savez(os.path.join(out, "golden.npz"), **golden)
    gelu_gap = float(np.abs(golden["mlm_logits_gelu"] - golden["mlm_logits_gelu_new"]).max())

    info = {
        "generated_by": "tests/data/make_interop_fixtures.py",
        "versions": versions(),
        "seed": SEED,
        "global_step": GLOBAL_STEP,
        "texts": [list(t) for t in TEXTS],
        "golden": GOLDEN_KEYS,
        "max_abs_diff_mlm_logits_gelu_vs_gelu_new": round(gelu_gap, 4),
    }
    with open(os.path.join(out, "versions.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
    return {"seconds": round(time.perf_counter() - start, 1), "gelu_gap": gelu_gap}


# ---------------------------------------------------------------------------------------------
# Comparison of two fixture directories.

# Written by the library's version, not by the model: compared without these keys.
_VOLATILE_JSON_KEYS = {"transformers_version"}
# Says which versions wrote it; differs by design.
_NOT_COMPARED = {"versions.json", "README.md"}


def _tensors(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    raise ValueError(path)


def _tf1_tensors(directory: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(directory)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _compare_tensors(where: str, expected: dict, got: dict) -> list[str]:
    problems = []
    if set(expected) != set(got):
        problems.append(f"{where}: names differ: missing {sorted(set(expected) - set(got))}, "
                        f"extra {sorted(set(got) - set(expected))}")
    for name in sorted(set(expected) & set(got)):
        a, b = expected[name], got[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{where}:{name}: {a.dtype}{list(a.shape)} committed, "
                            f"{b.dtype}{list(b.shape)} regenerated")
        elif a.dtype.kind in "iub":
            if not np.array_equal(a, b):
                problems.append(f"{where}:{name}: integer values differ")
        else:
            diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0.0))
            if not diff <= TOLERANCE:
                problems.append(f"{where}:{name}: max abs diff {diff:.3g} > {TOLERANCE}")
    return problems


def compare(expected_dir: str, got_dir: str) -> list[str]:
    """Every difference between two fixture directories, as lines."""
    def files(root):
        return {os.path.relpath(os.path.join(d, f), root)
                for d, _, names in os.walk(root) for f in names} - _NOT_COMPARED

    problems = []
    expected, got = files(expected_dir), files(got_dir)
    if expected != got:
        problems.append(f"files differ: only committed {sorted(expected - got)}, "
                        f"only regenerated {sorted(got - expected)}")
    for rel in sorted(expected & got):
        a, b = os.path.join(expected_dir, rel), os.path.join(got_dir, rel)
        if rel.startswith("tf1/") and rel != "tf1/checkpoint":
            continue  # compared as a whole below
        if rel.endswith((".npz", ".safetensors")):
            problems += _compare_tensors(rel, _tensors(a), _tensors(b))
            if rel.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(a, "np") as fa, safe_open(b, "np") as fb:
                    if fa.metadata() != fb.metadata():
                        problems.append(f"{rel}: metadata {fa.metadata()} != {fb.metadata()}")
        elif rel.endswith(".json"):
            with open(a, encoding="utf-8") as fa, open(b, encoding="utf-8") as fb:
                ja, jb = json.load(fa), json.load(fb)
            for doc in (ja, jb):
                for key in _VOLATILE_JSON_KEYS:
                    doc.pop(key, None)
            if ja != jb:
                problems.append(f"{rel}: contents differ")
        else:
            with open(a, "rb") as fa, open(b, "rb") as fb:
                if fa.read() != fb.read():
                    problems.append(f"{rel}: contents differ")
    problems += _compare_tensors("tf1/", _tf1_tensors(os.path.join(expected_dir, "tf1")),
                                 _tf1_tensors(os.path.join(got_dir, "tf1")))
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="fixture directory (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary directory and compare with --out")
    args = parser.parse_args(argv)
    if not args.check:
        # README.md is written by hand: keep it across a rewrite.
        readme = os.path.join(args.out, "README.md")
        kept = open(readme, encoding="utf-8").read() if os.path.exists(readme) else None
        stats = generate(args.out)
        if kept is not None:
            with open(readme, "w", encoding="utf-8") as f:
                f.write(kept)
        size = sum(os.path.getsize(os.path.join(d, f))
                   for d, _, names in os.walk(args.out) for f in names)
        print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {stats['seconds']} s; "
              f"erf vs tanh GELU: MLM logits differ by up to {stats['gelu_gap']:.3f}")
        return 0
    with tempfile.TemporaryDirectory(prefix="interop-fixtures-") as tmp:
        stats = generate(os.path.join(tmp, "interop"))
        problems = compare(args.out, os.path.join(tmp, "interop"))
    if problems:
        print(f"{args.out}: the regenerated fixtures differ from the committed ones:\n  "
              + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{args.out}: regenerated in {stats['seconds']} s, equal to the committed fixtures "
          f"within {TOLERANCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
