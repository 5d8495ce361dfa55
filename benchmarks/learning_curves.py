"""Learning curves side by side: our ``ElectraPretrainer``, Model Garden's, and a uniform control.

The question (temperature 1, small models): our discriminator leaves the all-original baseline
early, then returns to it with collapsed representations (replaced-token AUC ~0.9 → ~0.6, mean
cosine between token outputs ~0.25 → ~0.8, precision/recall → 0) while the generator's loss
falls to the unigram entropy. Hypothesis: once the generator samples with unigram frequencies, a
replacement's token identity no longer tells it apart from an original, only context does,
which this small discriminator has not learned yet. That is normal dynamics only if TF Model
Garden's ``ElectraPretrainer`` does the same. This script trains three sides on the same data:

* ``ours``: ``electra_tf.objective.pretrainer.ElectraPretrainer.train_step`` (in a ``tf.function``);
* ``model_garden``: ``official.nlp.modeling.models.ElectraPretrainer`` (tf-models-official,
  tf_keras; in ``--peer_python``: the two Keras versions cannot share a process), one step as
  ``ElectraPretrainTask.train_step`` does it;
* ``ours_uniform``: ours with ``objective.replacements=uniform`` (the reference's
  ``uniform_generator``): the control in which token identity always gives replacements away.

**The same on every side:** the batches and their order (exported once to ``batches.npz``), the
masks (``masking.mask_tokens`` with ``sampling.example_seeds(seed, stream, step, example)``),
the Gumbel noise (``sampling.gumbel_max_sample`` with the same per-example seeds, applied to each
side's own generator logits; it replaces Model Garden's unseeded ``sample_from_softmax`` as in
``benchmarks/parity_model_garden.py``), temperature 1, the initial weights (ours for the seed,
mapped onto the peer by ``mapping_table``), exact GELU (``build_peer``), dropout 0.1, peak
learning rate, warm-up and linear decay lengths, weight decay 0.01 without LayerNorm weights and
biases, clipping to global norm 1.0, and the evaluation (same held-out batches, masks and noise;
metrics from ``electra_tf/objective/losses.py`` on both sides).

**Different by design** (``docs/validation.md``):

* optimizer: each side's own as it ships. Ours: ``optimization.build_optimizer`` (Adam
  *without* bias correction, ε 1e-6, warm-up *multiplied into* the decay:
  ``lr · (1 − t/T) · min(1, t/W)``). Model Garden: the ``electra/pretraining`` experiment's
  ``OptimizationConfig`` with only rate and lengths changed (``legacy_adamw.AdamWeightDecay``:
  Adam *with* bias correction, ε 1e-7; ``PolynomialWarmUp`` linear to ``lr · (1 − W/T)``, then
  ``PolynomialDecay`` to 0). Early updates of ours are 3–6× larger for steady gradients;
* embeddings: Model Garden ties only the word table; its generator and discriminator each train
  their own position/segment tables and embedding LayerNorm (both copies start from ours);
* dropout random numbers: each side's own. Ours are seeded per layer and checkpointed; Model
  Garden's ``tf_keras`` dropout draws from TensorFlow's global seed, set here from the seed and
  the step a process starts at, so a resumed peer run draws other (equally random) masks.

**Mechanism evidence.** At every evaluation the *token-identity AUC* measures how well a lookup
table ``P(replaced | token id)`` separates replaced from original tokens of the discriminator's
input: the table is estimated on one half of the evaluation sequences and scores the other
(2-fold cross-fitting, add-one smoothing toward the half's replaced rate). If the hypothesis
holds it falls toward 0.5 as the generator learns unigram frequencies, the discriminator's AUC
follows it, and it stays high for uniform replacements.

Usage:
  python benchmarks/learning_curves.py [--config demo] [--steps 1500] [--seeds 0,1,2]
      [--learning_rate 1e-3] [--warmup_steps STEPS/10] [--eval_every 50] [--eval_batches 8]
      [--data DIR] [--output_dir benchmarks/results/learning_curves]
      [--peer_python /tmp/peers/bin/python]

Without ``--data`` the packaged corpus is built with our Beam pipeline into
``OUTPUT_DIR/work/data`` (once). Each (side, seed) trains in its own process and writes a
checkpoint and its curve so far every ``--checkpoint_every`` steps under ``OUTPUT_DIR/work/runs``
(a finished run keeps its curve only); the same command again continues where it stopped
(arguments that change a run are refused).
Outputs: ``learning_curves.json`` (every logged point, command, versions, timings, verdict) and
PNG plots in ``OUTPUT_DIR``. Without a peer Python the Model Garden side is skipped
(``"skipped": reason``) and the rest still runs. Exit status 0 when every side that ran
finished, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time

import parity_model_garden as parity  # benchmarks/ is sys.path[0] when run as a script
from result_files import read_json, write_json

REPO = parity.REPO
DEFAULT_OUTPUT_DIR = os.path.join(REPO, "benchmarks", "results", "learning_curves")
CORPUS_GLOB = os.path.join(REPO, "electra_tf", "resources", "corpus", "*.gz")
SIDES = ("ours", "model_garden", "ours_uniform")
LABELS = {"ours": "ours (electra_tf)", "model_garden": "Model Garden",
          "ours_uniform": "ours, uniform replacements (control)"}
COLORS = {"ours": "tab:blue", "model_garden": "tab:orange", "ours_uniform": "tab:green"}
MASKING_STREAMS = (1, 2)  # sampling.MASKING_STREAM, SAMPLING_STREAM (training)
EVAL_STREAMS = (3, 4)  # sampling.EVAL_MASKING_STREAM, EVAL_SAMPLING_STREAM; step 0 always
DATA_SEED = 0  # the batch order is the same for every seed: seeds vary the model, not the data

# Metrics of a training row (means over the rows's interval) and of an evaluation row.
TRAIN_METRICS = ("generator_loss", "generator_accuracy", "discriminator_loss",
                 "discriminator_auc", "discriminator_precision", "discriminator_recall",
                 "replaced_fraction")
EVAL_METRICS = TRAIN_METRICS + ("representation_cosine", "token_identity_auc")

# Verdict thresholds. The two implementations differ by design (optimizer, embedding ties,
# dropout streams), so their curves are two samples of one dynamics, not equal numbers: "agree"
# means final values within these absolute tolerances.
AUC_TOLERANCE = 0.05
COSINE_TOLERANCE = 0.10
# At the all-original baseline: (almost) no replaced token scores above p = 0.5.
BASELINE_RECALL = 0.05
# The table lookup "carries no information" near 0.5; "informative" well above.
IDENTITY_UNINFORMATIVE = 0.65
IDENTITY_INFORMATIVE = 0.80
# Step-0 evaluations see identical weights, masks and noise: they must agree as in the one-step
# parity check.
STEP0_TOLERANCE = 1e-4


# -- the plan: everything a run's numbers depend on ------------------------------------------

def make_plan(args) -> dict:
    warmup = args.warmup_steps if args.warmup_steps is not None else args.steps // 10
    return {"config": args.config, "steps": args.steps, "learning_rate": args.learning_rate,
            "warmup_steps": warmup, "eval_every": args.eval_every,
            "eval_batches": args.eval_batches, "log_every": args.log_every,
            "checkpoint_every": args.checkpoint_every,
            "data": os.path.abspath(args.data) if args.data else "packaged corpus",
            "data_seed": DATA_SEED, "temperature": 1.0}


def config_overrides(plan: dict, seed: int, side: str) -> tuple[str, ...]:
    return ("objective.temperature=1", f"optimizer.learning_rate={plan['learning_rate']}",
            f"optimizer.warmup_steps={plan['warmup_steps']}", "optimizer.warmup_fraction=0",
            f"train.num_steps={plan['steps']}", f"train.seed={seed}",
            "objective.replacements=" + ("uniform" if side == "ours_uniform" else "generator"))


def check_plan(work_dir: str, plan: dict) -> None:
    """Refuses to continue runs of another plan in ``work_dir`` (their numbers would mix)."""
    path = os.path.join(work_dir, "plan.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in plan.items()
                   if saved.get(k) != v]
        if changed:
            raise SystemExit(f"{path} holds runs of another plan ({'; '.join(changed)}); use "
                             "another --output_dir, or delete that work directory")
    os.makedirs(work_dir, exist_ok=True)
    write_json(path, plan)


# -- data: built once, exported to one .npz both sides read ----------------------------------

def build_data(data_dir: str, seq_length: int) -> str:
    """The packaged corpus through our Beam pipeline (skipped when already COMPLETED)."""
    if os.path.exists(os.path.join(data_dir, "COMPLETED")):
        return data_dir
    command = [sys.executable, "-m", "pipelines.build_pretraining_data", "--input", CORPUS_GLOB,
               "--output_dir", data_dir, "--max_seq_length", str(seq_length), "--num_shards",
               "4", "--validation_fraction", "0.02", "--overwrite"]
    print("building the data:", " ".join(shlex.quote(c) for c in command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    return data_dir


def export_batches(data_dir: str, config, plan: dict, path: str) -> dict:
    """Training batches ``[steps, batch, seq]`` (train split, the tf.data order of
    ``data.pretraining_dataset`` with seed ``DATA_SEED``) and evaluation batches (the first
    ``eval_batches`` of the validation split, in file order) → ``path``; returns counts."""
    import numpy as np

    from electra_tf.training import input as data_lib
    from electra_tf.tokenizer import Tokenizer

    info_path = path + ".json"
    key = {"data": os.path.abspath(data_dir), "steps": plan["steps"],
           "eval_batches": plan["eval_batches"], "batch_size": config.train.batch_size,
           "seq_length": config.data.seq_length, "data_seed": DATA_SEED}
    if os.path.exists(path) and os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if info["key"] == key:
            return info
    tokenizer = Tokenizer()
    seq, batch = config.data.seq_length, config.train.batch_size
    train = data_lib.find_shards(data_dir, seq, tokenizer, "train")
    validation = data_lib.find_shards(data_dir, seq, tokenizer, "validation")
    if validation.num_examples and validation.num_examples < plan["eval_batches"] * batch:
        # The evaluation dataset repeats: the two cross-fitting halves would share sequences.
        raise SystemExit(f"{data_dir}: the validation split has {validation.num_examples} "
                         f"examples, fewer than --eval_batches {plan['eval_batches']} × batch "
                         f"{batch}")

    def take(dataset, n):
        parts = {k: [] for k in ("token_ids", "segment_ids", "padding_mask")}
        for element in dataset.take(n):
            for k in parts:
                parts[k].append(element[k].numpy())
        return {k: np.stack(v) for k, v in parts.items()}

    arrays = {f"train_{k}": v for k, v in take(data_lib.pretraining_dataset(
        train, batch, DATA_SEED, shuffle_buffer=config.data.shuffle_buffer,
        cycle_length=config.data.cycle_length), plan["steps"]).items()}
    arrays.update({f"eval_{k}": v for k, v in take(data_lib.pretraining_dataset(
        validation, batch, seed=0, training=False), plan["eval_batches"]).items()})
    if arrays["eval_token_ids"].shape[0] < plan["eval_batches"]:
        raise SystemExit(f"{data_dir}: fewer than {plan['eval_batches']} validation batches")
    np.savez_compressed(path, **{k: v.astype(np.int32) for k, v in arrays.items()})
    info = {"key": key, "train_examples": train.num_examples,
            "validation_examples": validation.num_examples,
            "train_batches": int(arrays["train_token_ids"].shape[0]),
            "epochs": round(plan["steps"] * batch / max(train.num_examples, 1), 3)}
    write_json(info_path, info)
    return info


def export_initial_weights(config, path: str) -> None:
    """Our initial weights for ``config.train.seed`` (every side starts from them)."""
    if os.path.exists(path):
        return
    import numpy as np

    from electra_tf.objective.pretrainer import build_pretrainer
    from electra_tf.tokenizer import Tokenizer

    np.savez(path + ".tmp.npz", **parity.export_weights(build_pretrainer(config, Tokenizer())))
    os.replace(path + ".tmp.npz", path)


def run_spec(config, plan: dict, side: str, seed: int, work_dir: str, special_tokens) -> dict:
    """Plain data for one worker (written as ``spec.json`` in its run directory)."""
    objective = config.objective
    return {"side": side, "seed": seed, "plan": plan,
            "overrides": list(config_overrides(plan, seed, side)),
            "model": parity.model_spec(config),
            "masking": {"max_predictions": config.max_predictions,
                        "mask_prob": objective.mask_prob,
                        "mask_token_rate": objective.mask_token_rate,
                        "random_token_rate": objective.random_token_rate,
                        "vocab_size": config.model.vocab_size,
                        "mask_id": special_tokens["[MASK]"],
                        "excluded_ids": [special_tokens[t] for t in ("[CLS]", "[SEP]", "[MASK]")]},
            "uniform_replacements": side == "ours_uniform",
            "batches": os.path.join(work_dir, "batches.npz"),
            "initial_weights": os.path.join(work_dir, f"initial_weights_seed{seed}.npz")}


# -- shared by both processes (TensorFlow and electra_tf's TF-only modules) ------------------

def mask_batch(spec: dict, token_ids, segment_ids, padding_mask, streams, step) -> dict:
    """Step 1 of the objective exactly as ``ElectraPretrainer._prepare``: masks and sample seeds
    keyed on ``(seed, stream, step, example index)``, the example index being the position in
    the batch (the global batch of one device)."""
    import tensorflow as tf

    from electra_tf.objective import masking, sampling

    token_ids, segment_ids, padding_mask = (tf.cast(t, tf.int32)
                                            for t in (token_ids, segment_ids, padding_mask))
    index = tf.range(tf.shape(token_ids)[0])
    m = spec["masking"]
    masked = masking.mask_tokens(
        token_ids, padding_mask, sampling.example_seeds(spec["seed"], streams[0], step, index),
        max_predictions=m["max_predictions"], mask_prob=m["mask_prob"],
        mask_token_rate=m["mask_token_rate"], random_token_rate=m["random_token_rate"],
        mask_id=m["mask_id"], vocab_size=m["vocab_size"], excluded_ids=tuple(m["excluded_ids"]))
    return {"original_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask,
            **masked._asdict(),
            "sample_seeds": sampling.example_seeds(spec["seed"], streams[1], step, index)}


def metric_sums(batch: dict, mlm_logits, rtd_logits, is_replaced, hidden=None) -> dict:
    """Per-batch sums behind the metrics (add them over batches; :func:`finish_metrics`)."""
    from electra_tf.objective import losses

    sums = {"generator_loss": losses.mlm_loss(mlm_logits, batch["labels"], batch["weights"]),
            "discriminator_loss": losses.rtd_loss(rtd_logits, is_replaced, batch["padding_mask"]),
            **losses.mlm_counts(mlm_logits, batch["labels"], batch["weights"]),
            **losses.rtd_counts(rtd_logits, is_replaced, batch["padding_mask"], batch["weights"],
                                batch["positions"]),
            **losses.rtd_histograms(rtd_logits, is_replaced, batch["padding_mask"])}
    if hidden is not None:
        sums.update(losses.cosine_sums(hidden, batch["padding_mask"]))
    return sums


def finish_metrics(sums: dict, batches: int) -> dict:
    """Metric values as ``objective.step_metrics.global_metrics`` computes them; losses are means
    over ``batches`` batches (as the training loop's evaluation), the rest pooled counts."""
    from electra_tf.objective import losses

    metrics = {
        "generator_loss": float(sums["generator_loss"]) / batches,
        "discriminator_loss": float(sums["discriminator_loss"]) / batches,
        "generator_accuracy": float(losses.safe_ratio(sums["generator_correct"],
                                                      sums["predictions"])),
        "discriminator_precision": float(losses.safe_ratio(sums["true_positives"],
                                                           sums["predicted_positives"])),
        "discriminator_recall": float(losses.safe_ratio(sums["true_positives"],
                                                        sums["actual_positives"])),
        "discriminator_auc": float(losses.auc_from_histograms(sums["replaced_histogram"],
                                                              sums["original_histogram"])),
        "replaced_fraction": float(losses.safe_ratio(sums["replaced_at_masked"],
                                                     sums["predictions"])),
    }
    if "unit_sum" in sums:
        metrics["representation_cosine"] = float(losses.mean_cosine(sums["unit_sum"],
                                                                    sums["unit_count"]))
    return metrics


def token_identity_auc(token_ids, is_replaced, padding_mask) -> float:
    """AUC of ``P(replaced | token id)`` on the discriminator's input, 2-fold cross-fitted.

    Sequences alternate between two halves; each half is scored by the table of the other,
    ``(replaced(id) + a·p) / (seen(id) + a)`` with ``a = 1`` and ``p`` the half's replaced
    rate (an id the half never saw scores ``p``). The AUC is ``losses.auc_from_histograms``
    over one bin per distinct score: exact, ties count one half.

    Args: int arrays [examples, seq] of the evaluation set.
    """
    import numpy as np
    import tensorflow as tf

    from electra_tf.objective import losses

    ids = np.asarray(token_ids).astype(np.int64)
    labels = np.asarray(is_replaced).astype(np.float64)
    real = np.asarray(padding_mask) > 0
    half = (np.arange(ids.shape[0]) % 2 == 0)[:, None] & real
    other = ~(np.arange(ids.shape[0]) % 2 == 0)[:, None] & real
    size = int(ids.max()) + 1
    scores = np.zeros(ids.shape)
    for estimate, score in ((half, other), (other, half)):
        replaced = np.bincount(ids[estimate], weights=labels[estimate], minlength=size)
        seen = np.bincount(ids[estimate], minlength=size)
        rate = replaced.sum() / max(seen.sum(), 1)
        scores[score] = ((replaced + rate) / (seen + 1.0))[ids[score]]
    values, bins = np.unique(scores[real], return_inverse=True)
    y = labels[real]
    hist = lambda w: tf.constant(np.bincount(bins, weights=w, minlength=len(values)),  # noqa
                                 tf.float32)
    return float(losses.auc_from_histograms(hist(y), hist(1.0 - y)))


def evaluate(eval_fn, batches: dict) -> dict:
    """Runs ``eval_fn`` (one batch → sums, discriminator input ids, labels) over the held-out
    batches; returns the finished metrics plus the token-identity AUC."""
    import numpy as np

    total, ids, labels = {}, [], []
    count = batches["eval_token_ids"].shape[0]
    for i in range(count):
        sums, corrupted, is_replaced = eval_fn(batches["eval_token_ids"][i],
                                               batches["eval_segment_ids"][i],
                                               batches["eval_padding_mask"][i])
        for k, v in sums.items():
            total[k] = total[k] + v.numpy() if k in total else v.numpy()
        ids.append(corrupted.numpy())
        labels.append(is_replaced.numpy())
    metrics = finish_metrics(total, count)
    metrics["token_identity_auc"] = token_identity_auc(
        np.concatenate(ids), np.concatenate(labels),
        batches["eval_padding_mask"].reshape(-1, batches["eval_padding_mask"].shape[-1]))
    return metrics


# -- one (side, seed): the loop both workers share ---------------------------------------------

def train_loop(run_dir: str, spec: dict, side, batches: dict) -> None:
    """Train ``spec['plan']['steps']`` steps, resuming from the run's checkpoint.

    ``side`` provides ``step()`` (the restored step), ``train(i) -> metrics``, ``evaluate() ->
    metrics``, ``learning_rate(i)``, ``save(step)`` and ``describe() -> dict``. Rows are written
    with each checkpoint, so the curve file always matches a checkpoint; rows past the restored
    step (written before a later checkpoint that was interrupted) are dropped.
    """
    plan = spec["plan"]
    name = f"[{spec['side']} seed {spec['seed']}]"
    curve_path = os.path.join(run_dir, "curve.json")
    curve = {"side": spec["side"], "seed": spec["seed"], "train": [], "eval": [],
             "timings": {"train_s": 0.0, "eval_s": 0.0, "first_step_s": None, "steps_timed": 0},
             "resumed_at": [], "done": False}
    if os.path.exists(curve_path):
        with open(curve_path) as f:
            curve = json.load(f)
    step = side.step()
    for split in ("train", "eval"):
        curve[split] = [row for row in curve[split] if row["step"] <= step]
    if step:
        curve["resumed_at"].append(step)
        print(f"{name} resumed at step {step}", flush=True)
    curve.update(side.describe())

    def eval_row():
        start = time.time()
        row = {"step": step, **side.evaluate()}
        curve["timings"]["eval_s"] += time.time() - start
        curve["eval"].append(row)
        print(f"{name} step {step:>5}/{plan['steps']}  eval: gen {row['generator_loss']:.3f}  "
              f"disc {row['discriminator_loss']:.4f}  AUC {row['discriminator_auc']:.3f}  "
              f"identity AUC {row['token_identity_auc']:.3f}  "
              f"P/R {row['discriminator_precision']:.2f}/{row['discriminator_recall']:.2f}  "
              f"cos {row['representation_cosine']:.3f}  "
              f"({_steps_per_s(curve['timings']):.2f} steps/s)", flush=True)

    if step == 0:
        eval_row()
    interval, traced = [], False
    while step < plan["steps"]:
        rate = side.learning_rate(step)
        start = time.time()
        interval.append(side.train(step))
        elapsed = time.time() - start
        step += 1
        timings = curve["timings"]
        if not traced:  # the first step of each process traces the step function
            timings["first_step_s"] = (timings["first_step_s"] or 0.0) + elapsed
            traced = True
        else:
            timings["train_s"] += elapsed
            timings["steps_timed"] += 1
        if step % plan["log_every"] == 0 or step == plan["steps"]:
            curve["train"].append({"step": step, "learning_rate": rate, **{
                k: sum(m[k] for m in interval) / len(interval) for k in TRAIN_METRICS}})
            interval = []
        if step % plan["eval_every"] == 0 or step == plan["steps"]:
            eval_row()
        if step == plan["steps"]:
            curve["step"], curve["done"] = step, True
            write_json(curve_path, curve)
            # A finished run cannot be extended (another --steps is another schedule, refused),
            # so its checkpoints (~70 MB at demo size) are of no further use.
            shutil.rmtree(os.path.join(run_dir, "ckpt"), ignore_errors=True)
        elif step % plan["checkpoint_every"] == 0:
            curve["step"] = step
            write_json(curve_path, curve)
            side.save(step)


def _steps_per_s(timings: dict) -> float:
    return timings["steps_timed"] / timings["train_s"] if timings["train_s"] else float("nan")


class OurSide:
    """Our ``ElectraPretrainer``: ``train_step`` as the library runs it, in a ``tf.function``."""

    def __init__(self, run_dir: str, spec: dict, batches: dict):
        import numpy as np
        import tensorflow as tf

        from electra_tf.objective import sampling
        from electra_tf.config import to_dict
        from electra_tf.config_io import load_config
        from electra_tf.training.optimization import build_optimizer
        from electra_tf.objective.pretrainer import build_pretrainer
        from electra_tf.tokenizer import Tokenizer
        from electra_tf.training.checkpointing import model_state, optimizer_state

        self.spec, self.batches = spec, batches
        config = load_config(spec["plan"]["config"], tuple(spec["overrides"]))
        self.config = config
        model = build_pretrainer(config, Tokenizer())
        weights = np.load(spec["initial_weights"])
        for variable in model.trainable_variables:
            variable.assign(weights[variable.path])
        self.optimizer = build_optimizer(config.optimizer, config.train.num_steps, model)
        model.compile(optimizer=self.optimizer)
        self.model = model
        self._train_step = tf.function(model.train_step, autograph=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model_state(model), optimizer=optimizer_state(self.optimizer),
            seed_generators=model.seed_generator_variables())
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(run_dir, "ckpt"),
                                                  max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint) \
                .assert_existing_objects_matched()

        uniform = spec["uniform_replacements"]
        temperature = config.objective.temperature

        @tf.function(autograph=False)
        def eval_fn(token_ids, segment_ids, padding_mask):
            # Steps 2-4 of ElectraPretrainer._objective, unrolled because test_step returns only
            # sums and the token-identity AUC needs the discriminator's input; check_eval()
            # holds the two equal.
            batch = mask_batch(spec, token_ids, segment_ids, padding_mask, EVAL_STREAMS, 0)
            inputs = {"segment_ids": batch["segment_ids"], "padding_mask": batch["padding_mask"]}
            hidden = model.generator({**inputs, "token_ids": batch["token_ids"]}, training=False)
            mlm_logits = model.mlm_head(hidden, batch["positions"])
            sampled = sampling.gumbel_max_sample(
                tf.zeros_like(mlm_logits) if uniform else mlm_logits, batch["sample_seeds"],
                temperature)
            corrupted, is_replaced = sampling.replace_tokens(
                batch["original_ids"], batch["positions"], batch["weights"], sampled)
            hidden = model.discriminator({**inputs, "token_ids": corrupted}, training=False)
            rtd_logits = model.rtd_head(hidden)
            return metric_sums(batch, mlm_logits, rtd_logits, is_replaced, hidden), corrupted, \
                is_replaced

        self._eval_fn = eval_fn
        self.versions = {"tensorflow": tf.__version__,
                         "keras": __import__("keras").__version__}
        self.optimizer_config = to_dict(config)["optimizer"]
        if not self.manager.latest_checkpoint:
            self.check_prepare_and_eval()

    def check_prepare_and_eval(self) -> None:
        """:func:`mask_batch` is ``_prepare`` (so the peer's masks are ours) and the unrolled
        evaluation is ``test_step``."""
        import numpy as np
        import tensorflow as tf

        b = {k: tf.constant(self.batches[f"train_{k}"][0])
             for k in ("token_ids", "segment_ids", "padding_mask")}
        ours, _ = self.model._prepare(dict(b, example_index=tf.range(b["token_ids"].shape[0])),
                                      *MASKING_STREAMS, tf.constant(0, tf.int64))
        mine = mask_batch(self.spec, b["token_ids"], b["segment_ids"], b["padding_mask"],
                          MASKING_STREAMS, tf.constant(0, tf.int64))
        for k, v in ours.items():
            if not np.array_equal(v.numpy(), mine[k].numpy()):
                raise AssertionError(f"mask_batch differs from ElectraPretrainer._prepare in {k}")
        e = {k: self.batches[f"eval_{k}"][0] for k in ("token_ids", "segment_ids",
                                                       "padding_mask")}
        sums, _, _ = self._eval_fn(e["token_ids"], e["segment_ids"], e["padding_mask"])
        unrolled = finish_metrics({k: v.numpy() for k, v in sums.items()}, 1)
        library = self.model.test_step(
            dict({k: tf.constant(v) for k, v in e.items()},
                 example_index=tf.range(e["token_ids"].shape[0])))
        for k, v in unrolled.items():
            if abs(v - float(library[k])) > 1e-5:
                raise AssertionError(f"unrolled evaluation differs from test_step in {k}: "
                                     f"{v} vs {float(library[k])}")

    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def learning_rate(self, step: int) -> float:
        return float(self.optimizer.learning_rate)  # the schedule at iterations == step

    def train(self, i: int) -> dict:
        import tensorflow as tf

        b = self.batches
        out = self._train_step({"token_ids": b["train_token_ids"][i],
                                "segment_ids": b["train_segment_ids"][i],
                                "padding_mask": b["train_padding_mask"][i],
                                "example_index": tf.range(b["train_token_ids"].shape[1])})
        return {k: float(out[k]) for k in TRAIN_METRICS}

    def evaluate(self) -> dict:
        return evaluate(self._eval_fn, self.batches)

    def save(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)

    def describe(self) -> dict:
        decayed = [v for v in self.model.trainable_variables
                   if self.optimizer._use_weight_decay(v)]
        return {"versions": self.versions, "optimizer": {
            **self.optimizer_config, "class": "electra_tf.training.optimization.AdamWeightDecay",
            "schedule": "lr · (1 − t/T) · min(1, t/W) (warm-up multiplied into the decay)",
            "decayed_variables": len(decayed),
            "trainable_variables": len(self.model.trainable_variables)},
            "dropout": "SeededDropout, seeded per layer from train.seed; state checkpointed"}


class PeerSide:
    """Model Garden's ``ElectraPretrainer`` with its ``electra/pretraining`` optimizer."""

    def __init__(self, run_dir: str, spec: dict, batches: dict):
        import importlib.metadata

        import numpy as np
        import tensorflow as tf
        import tf_keras
        from official.core import exp_factory
        from official.modeling import optimization
        from official.nlp.configs import pretraining_experiments  # noqa: F401 (registers it)
        from official.nlp.modeling.models import electra_pretrainer

        from electra_tf.objective import sampling

        self.spec, self.batches = spec, batches
        plan = spec["plan"]
        model_spec = spec["model"]
        # Our Gumbel noise (seeds, temperature) instead of its unseeded sampler, as in the
        # parity check. The seeds of the batch being traced are set before each model call.
        self.current = {}

        def sample_from_softmax(logits, disallow=None):
            assert disallow is None  # disallow_correct=False, the task's default
            self.current["sampled"] = sampling.gumbel_max_sample(
                logits, self.current["seeds"], model_spec["temperature"])
            return tf.one_hot(self.current["sampled"], logits.shape[-1])

        electra_pretrainer.sample_from_softmax = sample_from_softmax
        model = parity.build_peer(model_spec)
        first = mask_batch(spec, batches["train_token_ids"][0], batches["train_segment_ids"][0],
                           batches["train_padding_mask"][0], MASKING_STREAMS, 0)
        self.current["seeds"] = first["sample_seeds"]
        model(self._inputs(first))  # builds the variables
        weights = np.load(spec["initial_weights"])
        for row in parity.mapping_table(model_spec):
            for accessor in row["peer"]:
                variable = parity._resolve(model, accessor)
                variable.assign(weights[row["ours"]].reshape(variable.shape))
        self.model = model

        experiment = exp_factory.get_exp_config("electra/pretraining")
        optimization_config = experiment.trainer.optimizer_config
        optimization_config.override({
            "learning_rate": {"polynomial": {"initial_learning_rate": plan["learning_rate"],
                                             "decay_steps": plan["steps"]}},
            "warmup": {"polynomial": {"warmup_steps": plan["warmup_steps"]}}})
        factory = optimization.OptimizerFactory(optimization_config)
        self.schedule = factory.build_learning_rate()
        self.optimizer = factory.build_optimizer(self.schedule)
        self.optimization_config = optimization_config.as_dict()
        task, task_metrics = parity.peer_task(model_spec["discriminator_weight"])
        variables = model.trainable_variables
        # Slots exist before a restore, so it fills them at once (not deferred).
        self.optimizer._create_all_weights(variables)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(run_dir, "ckpt"),
                                                  max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint) \
                .assert_existing_objects_matched()
        # tf_keras dropout draws from the global seed: fixed for a (seed, start step).
        tf.random.set_seed(spec["seed"] * 1_000_003 + self.step())

        @tf.function
        def train_step(token_ids, segment_ids, padding_mask, step):
            batch = mask_batch(spec, token_ids, segment_ids, padding_mask, MASKING_STREAMS, step)
            inputs = self._inputs(batch)
            self.current["seeds"] = batch["sample_seeds"]
            # As ElectraPretrainTask.train_step (one replica), keeping the outputs for metrics.
            with tf.GradientTape() as tape:
                outputs = model(inputs, training=True)
                loss = task.build_losses(labels=inputs, model_outputs=outputs,
                                         metrics=task_metrics, aux_losses=model.losses)
            grads = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(list(zip(grads, variables)))
            return metric_sums(batch, outputs["lm_outputs"], outputs["disc_logits"],
                               outputs["disc_label"])

        @tf.function
        def eval_fn(token_ids, segment_ids, padding_mask):
            batch = mask_batch(spec, token_ids, segment_ids, padding_mask, EVAL_STREAMS, 0)
            self.current["seeds"] = batch["sample_seeds"]
            outputs = model(self._inputs(batch), training=False)
            corrupted, is_replaced = sampling.replace_tokens(
                batch["original_ids"], batch["positions"], batch["weights"],
                self.current["sampled"])
            # Its own labels are ours (parity check); the representation is the discriminator
            # network's sequence output on its input.
            tf.debugging.assert_equal(is_replaced, tf.cast(outputs["disc_label"], tf.int32))
            hidden = model.discriminator_network(
                [corrupted, batch["padding_mask"], batch["segment_ids"]],
                training=False)["sequence_output"]
            return metric_sums(batch, outputs["lm_outputs"], outputs["disc_logits"],
                               is_replaced, hidden), corrupted, is_replaced

        self._train_step, self._eval_fn = train_step, eval_fn
        self.versions = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                         "tf_models_official": importlib.metadata.version("tf-models-official")}

    @staticmethod
    def _inputs(batch: dict) -> dict:
        """Our masks under Model Garden's feature names (its input pipeline masks offline)."""
        return {"input_word_ids": batch["token_ids"], "input_mask": batch["padding_mask"],
                "input_type_ids": batch["segment_ids"],
                "masked_lm_positions": batch["positions"], "masked_lm_ids": batch["labels"],
                "masked_lm_weights": batch["weights"]}

    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def learning_rate(self, step: int) -> float:
        return float(self.schedule(step))

    def train(self, i: int) -> dict:
        import tensorflow as tf

        b = self.batches
        sums = self._train_step(b["train_token_ids"][i], b["train_segment_ids"][i],
                                b["train_padding_mask"][i], tf.constant(i, tf.int64))
        return finish_metrics({k: v.numpy() for k, v in sums.items()}, 1)

    def evaluate(self) -> dict:
        return evaluate(self._eval_fn, self.batches)

    def save(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)

    def describe(self) -> dict:
        variables = self.model.trainable_variables
        decayed = [v for v in variables if self.optimizer._do_use_weight_decay(v.name)]
        return {"versions": self.versions, "optimizer": {
            **self.optimization_config,
            "class": "official.modeling.optimization.legacy_adamw.AdamWeightDecay",
            "schedule": "PolynomialWarmUp: lr · (1 − W/T) · max(t, 1)/W for t < W, then "
                        "PolynomialDecay lr · (1 − t/T); Adam with bias correction",
            "decayed_variables": len(decayed), "trainable_variables": len(variables)},
            "dropout": "tf_keras Dropout from the global seed (seed · 1000003 + start step)"}


def run_worker(run_dir: str, threads: int) -> int:
    """One (side, seed) in this process (ours or the peer Python); exits when the driver does."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)

    def exit_with_parent():  # stdin is the driver's pipe: EOF means the driver is gone
        sys.stdin.read()
        os._exit(3)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    with open(os.path.join(run_dir, "spec.json")) as f:
        spec = json.load(f)
    batches = dict(np.load(spec["batches"]))
    side_class = PeerSide if spec["side"] == "model_garden" else OurSide
    train_loop(run_dir, spec, side_class(run_dir, spec, batches), batches)
    return 0


# -- the driver --------------------------------------------------------------------------------

def run_sides(jobs: list[dict]) -> dict:
    """Starts one worker per (side, seed) that is not done, all at once (their CPU shares add
    up to the same throughput as one after another, and their start-ups overlap); waits.

    Returns ``{(side, seed): error}`` for the workers that failed.
    """
    pending = []
    for job in jobs:
        if read_json(os.path.join(job["run_dir"], "curve.json")).get("done"):
            print(f"[{job['side']} seed {job['seed']}] already done", flush=True)
            continue
        pending.append(job)
    threads = max(1, len(os.sched_getaffinity(0)) // max(len(pending), 1))
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONUNBUFFERED": "1"}
    processes = []
    try:
        for job in pending:
            stderr = open(os.path.join(job["run_dir"], "stderr.log"), "a")
            processes.append((job, stderr, subprocess.Popen(
                [job["python"], os.path.abspath(__file__), "--worker", job["run_dir"],
                 "--threads", str(threads)], stdin=subprocess.PIPE, stderr=stderr, env=env,
                cwd=REPO)))
        errors = {}
        for job, stderr, process in processes:
            process.wait()
            stderr.close()
            if process.returncode:
                with open(stderr.name) as f:
                    tail = f.read()[-3000:]
                errors[(job["side"], job["seed"])] = f"exit {process.returncode}: {tail}"
                print(f"[{job['side']} seed {job['seed']}] FAILED (exit {process.returncode}); "
                      f"see {stderr.name}\n{tail[-1500:]}", flush=True)
        return errors
    finally:
        for _, _, process in processes:
            if process.poll() is None:
                process.kill()


def summarize(side_runs: dict) -> dict:
    """Per side: the final evaluation, the AUC peak, identity-AUC movement and its correlation
    with the discriminator's AUC (means over seeds)."""
    import numpy as np

    summary = {}
    for side, runs in side_runs.items():
        curves = [run["eval"] for run in runs.values() if run.get("eval")]
        if not curves:
            continue
        length = min(len(c) for c in curves)  # an unfinished seed shortens them all
        curves = [c[:length] for c in curves]
        finals = {k: float(np.mean([c[-1][k] for c in curves])) for k in EVAL_METRICS}
        spread = {k: float(np.std([c[-1][k] for c in curves])) for k in EVAL_METRICS}
        steps = [row["step"] for row in curves[0]]
        auc = np.mean([[row["discriminator_auc"] for row in c] for c in curves], axis=0)
        identity = np.mean([[row["token_identity_auc"] for row in c] for c in curves], axis=0)
        cosine = np.mean([[row["representation_cosine"] for row in c] for c in curves], axis=0)
        peak = int(np.argmax(auc))
        later = slice(1, None)  # step 0 is the untrained model
        corr = (float(np.corrcoef(auc[later], identity[later])[0, 1])
                if len(steps) > 2 and np.std(auc[later]) > 0 and np.std(identity[later]) > 0
                else float("nan"))
        summary[side] = {
            "seeds": sorted(int(s) for s in runs), "final_step": steps[-1],
            "final": finals, "final_std_over_seeds": spread,
            "peak_auc": float(auc[peak]), "peak_auc_step": steps[peak],
            "cosine_at_peak_auc": float(cosine[peak]),
            "identity_auc_at_peak_auc": float(identity[peak]),
            "corr_auc_identity_auc": corr,
            "at_baseline": finals["discriminator_recall"] <= BASELINE_RECALL}
    return summary


def make_verdict(summary: dict, side_runs: dict, skipped: dict) -> dict:
    """Verdict fields and sentences, from the numbers only."""
    verdict, lines = {}, []
    ours, peer, control = (summary.get(s) for s in SIDES)
    fmt = lambda x: "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) \
        else f"{x:.3f}"  # noqa: E731
    for side, s in summary.items():
        f = s["final"]
        lines.append(
            f"{LABELS[side]}: final (step {s['final_step']}) AUC {fmt(f['discriminator_auc'])}, "
            f"identity AUC {fmt(f['token_identity_auc'])}, cosine "
            f"{fmt(f['representation_cosine'])}, P/R {fmt(f['discriminator_precision'])}/"
            f"{fmt(f['discriminator_recall'])}, generator loss {fmt(f['generator_loss'])}; AUC "
            f"peak {fmt(s['peak_auc'])} at step {s['peak_auc_step']} (identity AUC there "
            f"{fmt(s['identity_auc_at_peak_auc'])}, cosine {fmt(s['cosine_at_peak_auc'])}); "
            f"corr(AUC, identity AUC) {fmt(s['corr_auc_identity_auc'])}; at the baseline: "
            f"{'yes' if s['at_baseline'] else 'no'}")
    if ours and peer:
        step0 = []
        for seed in set(side_runs["ours"]) & set(side_runs["model_garden"]):
            a, b = side_runs["ours"][seed]["eval"][0], side_runs["model_garden"][seed]["eval"][0]
            if a["step"] == b["step"] == 0:
                step0.append(max(abs(a[k] - b[k]) for k in ("generator_loss",
                                                              "discriminator_loss",
                                                              "discriminator_auc",
                                                              "representation_cosine")))
        diffs = {k: abs(ours["final"][k] - peer["final"][k])
                 for k in ("discriminator_auc", "representation_cosine", "token_identity_auc",
                           "generator_loss", "discriminator_recall")}
        steps = {row["step"] for run in side_runs["ours"].values() for row in run["eval"]}
        gap = max((abs(_mean_auc_at(side_runs["ours"], s)
                       - _mean_auc_at(side_runs["model_garden"], s))
                   for s in steps if _mean_auc_at(side_runs["model_garden"], s) is not None),
                  default=float("nan"))
        agree = (diffs["discriminator_auc"] <= AUC_TOLERANCE
                 and diffs["representation_cosine"] <= COSINE_TOLERANCE)
        verdict.update({
            "step0_eval_max_abs_diff": max(step0) if step0 else None,
            "step0_eval_agrees": bool(step0) and max(step0) <= STEP0_TOLERANCE,
            "final_abs_diff_ours_vs_model_garden": diffs,
            "max_auc_gap_over_run": gap,
            "ours_and_model_garden_agree": agree,
            "both_at_baseline": ours["at_baseline"] and peer["at_baseline"]})
        lines.append(
            f"step 0 (same weights, masks, noise): max |ours − Model Garden| "
            f"{fmt(verdict['step0_eval_max_abs_diff'])} (tolerance {STEP0_TOLERANCE}): "
            f"{'equal' if verdict['step0_eval_agrees'] else 'NOT equal'}")
        lines.append(
            f"ours vs Model Garden at the end: |Δ AUC| {fmt(diffs['discriminator_auc'])} "
            f"(≤ {AUC_TOLERANCE}), |Δ cosine| {fmt(diffs['representation_cosine'])} "
            f"(≤ {COSINE_TOLERANCE}), |Δ identity AUC| {fmt(diffs['token_identity_auc'])}; "
            f"largest |Δ AUC| over the run {fmt(gap)}: "
            + ("AGREE within tolerance" if agree else "DIFFER beyond tolerance"))
    if control:
        verdict["control_leaves_baseline"] = not control["at_baseline"]
    generator_sides = [s for s in (ours, peer) if s]
    if generator_sides and control:
        fell = all(s["identity_auc_at_peak_auc"] >= IDENTITY_INFORMATIVE
                   and s["final"]["token_identity_auc"] <= IDENTITY_UNINFORMATIVE
                   for s in generator_sides)
        tracks = all(s["corr_auc_identity_auc"] >= 0.5 for s in generator_sides)
        stays = control["final"]["token_identity_auc"] >= IDENTITY_INFORMATIVE
        verdict.update({"identity_auc_fell_on_generator_sides": fell,
                        "discriminator_auc_tracks_identity_auc": tracks,
                        "identity_auc_stays_high_with_uniform": stays,
                        "hypothesis_supported": fell and tracks and stays})
        lines.append(
            f"mechanism: identity AUC ≥ {IDENTITY_INFORMATIVE} at the discriminator's AUC peak "
            f"and ≤ {IDENTITY_UNINFORMATIVE} at the end, on every generator side: "
            f"{'yes' if fell else 'no'}; "
            f"discriminator AUC tracks it (corr ≥ 0.5): {'yes' if tracks else 'no'}; uniform "
            f"control's identity AUC ends ≥ {IDENTITY_INFORMATIVE}: {'yes' if stays else 'no'}"
            f"; control leaves the baseline: "
            f"{'yes' if verdict['control_leaves_baseline'] else 'no'}")
    if "ours_and_model_garden_agree" in verdict:
        if verdict["ours_and_model_garden_agree"] and verdict["both_at_baseline"]:
            conclusion = ("Model Garden shows the same end state as ours (back at the "
                          "all-original baseline): shared dynamics of this setup, not a defect "
                          "of ours")
        elif verdict["ours_and_model_garden_agree"]:
            conclusion = "ours and Model Garden agree, and they are not both at the baseline"
        else:
            conclusion = ("ours and Model Garden end differently: the difference is in the "
                          "implementation or its by-design differences (optimizer first); "
                          "investigate before calling the collapse normal")
        lines.append("conclusion: " + conclusion + (
            f" (Model Garden side: {skipped['model_garden']})" if "model_garden" in skipped
            else ""))
    elif "model_garden" in skipped:
        lines.append(f"no comparison with Model Garden: {skipped['model_garden']}")
    verdict["lines"] = lines
    verdict["tolerances"] = {"auc": AUC_TOLERANCE, "cosine": COSINE_TOLERANCE,
                             "baseline_recall": BASELINE_RECALL,
                             "identity_uninformative": IDENTITY_UNINFORMATIVE,
                             "identity_informative": IDENTITY_INFORMATIVE,
                             "step0": STEP0_TOLERANCE}
    return verdict


def _mean_auc_at(runs: dict, step: int):
    import numpy as np

    values = [row["discriminator_auc"] for run in runs.values() for row in run.get("eval", [])
              if row["step"] == step]
    return float(np.mean(values)) if values else None


def plot(side_runs: dict, plan: dict, output_dir: str) -> list[str]:
    """One PNG per quantity; evaluation rows; one line per seed (a mean line over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = {
        "generator_loss.png": [("generator loss (MLM, eval)", [("generator_loss", "-")])],
        "discriminator_loss.png": [("discriminator loss (RTD, eval)",
                                    [("discriminator_loss", "-")])],
        "auc.png": [("replaced-token AUC (solid) and token-identity AUC (dashed)",
                     [("discriminator_auc", "-"), ("token_identity_auc", "--")])],
        "precision_recall.png": [("precision at p = 0.5", [("discriminator_precision", "-")]),
                                 ("recall at p = 0.5", [("discriminator_recall", "-")])],
        "representation_cosine.png": [("mean cosine between discriminator token outputs",
                                       [("representation_cosine", "-")])],
    }
    written = []
    title = (f"{plan['config']}, T = 1, lr {plan['learning_rate']:g}, warm-up "
             f"{plan['warmup_steps']}, {plan['steps']} steps")
    for filename, axes_spec in panels.items():
        fig, axes = plt.subplots(1, len(axes_spec), figsize=(6.5 * len(axes_spec), 4.2),
                                 squeeze=False)
        for ax, (ylabel, series) in zip(axes[0], axes_spec):
            for side, runs in side_runs.items():
                curves = [run["eval"] for run in runs.values() if run.get("eval")]
                for key, style in series:
                    for curve in curves:
                        ax.plot([r["step"] for r in curve], [r[key] for r in curve], style,
                                color=COLORS[side], alpha=0.35 if len(curves) > 1 else 1.0,
                                linewidth=1.0 if len(curves) > 1 else 1.6,
                                label=None if len(curves) > 1 else
                                f"{LABELS[side]}{' (identity)' if style == '--' else ''}")
                    if len(curves) > 1:
                        length = min(len(c) for c in curves)
                        ax.plot([r["step"] for r in curves[0][:length]],
                                np.mean([[r[key] for r in c[:length]] for c in curves], axis=0),
                                style, color=COLORS[side], linewidth=2.0,
                                label=f"{LABELS[side]}{' (identity)' if style == '--' else ''}"
                                      f" (mean of {len(curves)} seeds)")
            if plan["warmup_steps"]:
                ax.axvline(plan["warmup_steps"], color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("step")
            ax.set_title(ylabel, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = os.path.join(output_dir, filename)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo", help="model sizes, batch and sequence length")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--warmup_steps", type=int, default=None, help="default steps / 10")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated train seeds (default: the config's train.seed)")
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--eval_batches", type=int, default=8)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--checkpoint_every", type=int, default=250)
    parser.add_argument("--data", default=None,
                        help="a built data directory (train and validation splits); default: "
                             "the packaged corpus, built into OUTPUT_DIR/work/data")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--peer_python", default=None,
                        help=f"a Python with tf-models-official (default "
                             f"{parity.DEFAULT_PEER_PYTHON} if it exists)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.threads)

    started = time.time()
    command = "python benchmarks/learning_curves.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    from electra_tf.config import to_dict
    from electra_tf.config_io import load_config
    from electra_tf.tokenizer import Tokenizer

    plan = make_plan(args)
    base = load_config(args.config, config_overrides(plan, 0, "ours"))
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else [load_config(args.config).train.seed])
    output_dir = os.path.abspath(args.output_dir)
    work_dir = os.path.join(output_dir, "work")
    check_plan(work_dir, plan)

    skipped = {}
    python = args.peer_python or (parity.DEFAULT_PEER_PYTHON
                                  if os.path.exists(parity.DEFAULT_PEER_PYTHON) else None)
    if python is None or not os.path.exists(python):
        skipped["model_garden"] = (
            f"no peer Python ({args.peer_python or parity.DEFAULT_PEER_PYTHON} does not exist); "
            "set one up with: python -m venv /tmp/peers && /tmp/peers/bin/pip install "
            "tf-models-official 'tensorflow==2.20.*'")
        print(f"model_garden skipped: {skipped['model_garden']}", flush=True)
    sides = [s for s in SIDES if s not in skipped]

    data_dir = args.data or build_data(os.path.join(work_dir, "data"), base.data.seq_length)
    data_info = export_batches(data_dir, base, plan, os.path.join(work_dir, "batches.npz"))
    special_tokens = Tokenizer().settings()["special_tokens"]
    jobs = []
    for seed in seeds:
        export_initial_weights(load_config(args.config, config_overrides(plan, seed, "ours")),
                               os.path.join(work_dir, f"initial_weights_seed{seed}.npz"))
        for side in sides:
            config = load_config(args.config, config_overrides(plan, seed, side))
            run_dir = os.path.join(work_dir, "runs", side, f"seed_{seed}")
            os.makedirs(run_dir, exist_ok=True)
            write_json(os.path.join(run_dir, "spec.json"),
                        run_spec(config, plan, side, seed, work_dir, special_tokens))
            jobs.append({"side": side, "seed": seed, "run_dir": run_dir,
                         "python": python if side == "model_garden" else sys.executable})
    print(f"plan: {json.dumps(plan)}; seeds {seeds}; sides {sides}; data "
          f"{data_info['train_examples']} train / {data_info['validation_examples']} validation "
          f"examples ({data_info['epochs']} epochs)", flush=True)
    errors = {}
    for seed in seeds:  # the sides of a seed run at the same time
        errors.update(run_sides([j for j in jobs if j["seed"] == seed]))

    side_runs = {side: {} for side in sides}
    for job in jobs:
        curve = read_json(os.path.join(job["run_dir"], "curve.json"))
        if curve:
            side_runs[job["side"]][job["seed"]] = curve
        if (job["side"], job["seed"]) in errors:
            side_runs[job["side"]].setdefault(job["seed"], {})["error"] = \
                errors[(job["side"], job["seed"])]
    summary = summarize(side_runs)
    verdict = make_verdict(summary, side_runs, skipped)
    plots = plot(side_runs, plan, output_dir)
    complete = all(run.get("done") for runs in side_runs.values() for run in runs.values())
    result = {
        "command": command, "question": __doc__.split("\n\n")[1], "plan": plan,
        "seeds": seeds, "complete": complete,
        "config": {"name": args.config, "model": to_dict(base)["model"],
                   "generator": to_dict(base)["derived"]["generator_model"],
                   "batch_size": base.train.batch_size, "seq_length": base.data.seq_length,
                   "max_predictions": base.max_predictions},
        "data": {"dir": os.path.abspath(data_dir), **{k: v for k, v in data_info.items()
                                                      if k != "key"},
                 "order": f"train split, data.pretraining_dataset(seed={DATA_SEED}) order, the "
                          "same for every side and seed; evaluation: the first eval_batches "
                          "validation batches"},
        "differences_by_design": [
            "optimizer: ours electra_tf AdamWeightDecay (no bias correction, eps 1e-6, warm-up "
            "multiplied into the linear decay); Model Garden legacy_adamw.AdamWeightDecay from "
            "the electra/pretraining experiment (bias-corrected Adam, eps 1e-7, linear warm-up "
            "to lr·(1−W/T), then linear decay)",
            "embeddings: Model Garden ties only the word table; position/segment tables and the "
            "embedding LayerNorm train separately in its generator and discriminator",
            "dropout random numbers: each side's own generator (ours checkpointed; Model "
            "Garden's from the global seed, not resumed exactly)"],
        "sides": {side: {"label": LABELS[side], "runs": {str(k): v for k, v in runs.items()}}
                  for side, runs in side_runs.items()},
        "skipped": skipped or None,
        "summary": summary,
        "verdict": verdict,
        "timings": {"wall_s_this_invocation": round(time.time() - started, 1), "per_run": {
            f"{side}/seed_{seed}": {**run.get("timings", {}), "steps_per_s": _steps_per_s(
                run["timings"]) if "timings" in run else None}
            for side, runs in side_runs.items() for seed, run in runs.items()}},
        "plots": [os.path.relpath(p, output_dir) for p in plots],
    }
    result["sides"].update({side: {"label": LABELS[side], "skipped": reason}
                            for side, reason in skipped.items()})
    write_json(os.path.join(output_dir, "learning_curves.json"), result)
    print("\n" + "\n".join(verdict["lines"]))
    print(f"\nwrote {os.path.join(output_dir, 'learning_curves.json')} and "
          f"{', '.join(result['plots'])} ({time.time() - started:.0f} s)")
    return 0 if complete and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
