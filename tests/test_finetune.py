"""Fine-tuning: metrics, task readers, layer-wise decay, and a real run on the demo task."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from electra_tf import finetune
from electra_tf.config import ConfigError
from electra_tf.config_io import load_config
from electra_tf.finetuning import classifier, loop, metrics, tasks
from electra_tf.finetuning.config import build_finetuning_config
from electra_tf.models.pretrained import save_pretrained
from electra_tf.tokenizer import tokenizer_from_config
from electra_tf.training.optimization import build_optimizer, layerwise_lr_multipliers
from examples.demo_task import build_demo_task


# ---------------------------------------------------------------------------------------------
# Metrics on hand-computed examples.

def test_classification_metrics_hand_computed():
    labels = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 0, 2]
    assert metrics.accuracy(labels, preds) == pytest.approx(4 / 6)
    # Per class F1: 0 → P 1/2 R 1/2 → 1/2; 1 → P 2/3 R 2/3 → 2/3; 2 → 1.
    assert metrics.macro_f1(labels, preds) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # Gorodkin R_K: c=4, s=6, t=(2,3,1), p=(2,3,1): (24 − 14) / (36 − 14) = 10/22.
    assert metrics.matthews_corrcoef(labels, preds) == pytest.approx(10 / 22)
    # Binary MCC = (TP·TN − FP·FN) / sqrt(...): TP 2, TN 1, FP 1, FN 1 → 1/sqrt(3·3·2·2).
    assert metrics.matthews_corrcoef([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(1 / 6)
    # Degenerate: constant predictions → MCC 0, the absent class's F1 counts as 0.
    assert metrics.matthews_corrcoef([0, 1, 1], [1, 1, 1]) == 0.0
    assert metrics.macro_f1([0, 1, 1], [1, 1, 1]) == pytest.approx((0 + 0.8) / 2)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert metrics.classification_metrics([0, 1, 1], logits) == {
        "accuracy": pytest.approx(2 / 3), "macro_f1": pytest.approx((2 / 3 + 2 / 3) / 2),
        "mcc": pytest.approx(0.5)}


def test_regression_metrics_hand_computed():
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = (1,2,3,4), y = (1,3,2,4): centred dot 4, norms sqrt(5)·sqrt(5) → 0.8.
    assert metrics.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    np.testing.assert_allclose(metrics.rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    # Monotone but non-linear: Spearman 1, Pearson < 1.
    assert metrics.spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    # Ties: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4); centred dot 4.5, squared norms 4.5 and 5.
    assert metrics.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert metrics.pearson([1, 2, 3], [5, 5, 5]) == 0.0
    assert metrics.regression_metrics([1.0, 2.0], [1.0, 4.0])["mse"] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# Readers.

def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def test_file_task_reads_tsv_csv_jsonl_and_infers_sorted_labels(tmp_path):
    # TSV: a quote is text. CSV: standard quoting ("" is a literal quote).
    train = _write(tmp_path / "train.tsv", 'a\tb\tlabel\n"He said "hi"\tx\tpos\nbye\ty\tneg\n')
    dev = _write(tmp_path / "dev.csv", 'a,b,label\n"one, ""two""",z,neg\n')
    info, tr, dv = tasks.read_file_task(train, dev, text_column="a", text_b_column="b")
    assert info.labels == ("neg", "pos") and info.is_pair and info.num_outputs == 2
    assert tr.texts == ['"He said "hi"', "bye"] and tr.texts_b == ["x", "y"]
    assert tr.labels.tolist() == [1, 0] and dv.texts == ['one, "two"']
    assert dv.labels.tolist() == [0]
    jsonl = _write(tmp_path / "r.jsonl",
                   '{"text": "x", "score": 0.5}\n\n{"text": "y", "score": 2}\n')
    info, tr, _ = tasks.read_file_task(jsonl, jsonl, "regression", label_column="score")
    assert info.num_outputs == 1 and tr.labels.dtype == np.float32
    assert tr.labels.tolist() == [0.5, 2.0]
    info.save(str(tmp_path))
    assert tasks.TaskInfo.load(str(tmp_path)) == info


def test_file_task_errors_name_file_line_and_column(tmp_path):
    good = _write(tmp_path / "train.tsv", "text\tlabel\nhello\ta\nworld\tb\n")
    missing = _write(tmp_path / "dev.tsv", "text\tlbl\nhello\ta\n")
    with pytest.raises(tasks.TaskDataError, match=r"dev.tsv: no column 'label'; columns "
                                                  r"present: text, lbl"):
        tasks.read_file_task(good, missing)
    unseen = _write(tmp_path / "dev2.tsv", "text\tlabel\nhello\tc\n")
    with pytest.raises(tasks.TaskDataError, match=r"dev2.tsv: label\(s\) 'c' do not occur in "
                                                  r"the training data; known labels: a, b"):
        tasks.read_file_task(good, unseen)
    regression = _write(tmp_path / "reg.tsv", "text\tlabel\nx\t1.5\ny\thigh\n")
    with pytest.raises(tasks.TaskDataError, match=r"reg.tsv:3: label 'high' in column 'label' "
                                                  r"is not a finite number"):
        tasks.read_file_task(regression, regression, "regression")
    ragged = _write(tmp_path / "ragged.tsv", "text\tlabel\nx\ta\textra\n")
    with pytest.raises(tasks.TaskDataError, match=r"ragged.tsv:2: 3 fields, expected 2"):
        tasks.read_file_task(ragged, good)
    one_label = _write(tmp_path / "one.tsv", "text\tlabel\nx\ta\n")
    with pytest.raises(tasks.TaskDataError, match="at least 2 labels"):
        tasks.read_file_task(one_label, one_label)


def test_tsv_rows_are_lines_whatever_their_quotes(tmp_path):
    # Issue: text starting with " made 180 rows into 133 examples, some holding other rows and
    # their labels; an odd number of such quotes refused the file at its last line.
    rows = [(('"' if i % 6 == 1 else "") + f"row {i} says hi", f"l{i % 3}") for i in range(180)]
    rows[7] = ('"' + rows[7][0], rows[7][1])  # now an odd number of quotes
    lines = ["text\tlabel"] + [f"{t}\t{label}" for t, label in rows]
    lines.insert(50, "")  # line 51 is blank
    path = _write(tmp_path / "train.tsv", "\n".join(lines) + "\n")
    info, train, _ = tasks.read_file_task(path, path)
    # Lines add up: 1 header + 180 examples + 1 blank = 182.
    assert len(train) == 180 and train.blank_lines == 1 and len(lines) == 182
    assert train.texts == [t for t, _ in rows]
    assert [info.labels[i] for i in train.labels] == [label for _, label in rows]
    # A 140 kB text (over the csv module's 128 KiB field limit) is read whole, TSV and CSV.
    long = "spam " * 28_000
    for name, sep in (("long.tsv", "\t"), ("long.csv", ",")):
        path = _write(tmp_path / name, f"text{sep}label\n{long}{sep}spam\nshort{sep}ham\n")
        assert tasks.read_file_task(path, path)[1].texts == [long, "short"]
    # A UTF-8 byte-order mark (as Excel writes) is not part of the first column's name.
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbftext\tlabel\nx\ta\ny\tb\n")
    assert tasks.read_file_task(str(bom), str(bom))[1].texts == ["x", "y"]


def test_bad_quotes_and_bytes_are_refused_at_their_own_line(tmp_path):
    cases = {
        # CSV quoting is strict: a stray quote is refused where its record starts.
        "stray.csv": ('text,label\nok,a\n"Hello" she said,b\n',
                      r"stray.csv:3: not valid CSV \(',' expected after '\"', line 3\)"),
        "unclosed.csv": ('text,label\nok,a\n"never closed,b\nc,a\nd,b\n',
                         r"unclosed.csv:3: not valid CSV \(unexpected end of data, line 5\)"),
        "joined.csv": ('text,label\nok,a\n"runs on,b\nto here",a,b\n',
                       r"joined.csv:3: 3 fields, expected 2 \(text, label\); the row runs to "
                       r"line 4"),
        # Physical lines: a legal two-line record does not shift the lines after it.
        "multiline.csv": ('text,label\n"two\nlines",1\nok,high\n',
                          r"multiline.csv:4: label 'high' in column 'label' is not a finite"),
    }
    # A bad byte on line 6 is reported on line 6 (not where the decoder's chunk began).
    for name, sep in (("bytes.tsv", "\t"), ("bytes.csv", ","), ("bytes.jsonl", None)):
        good = [f'{{"text": "x{i}", "label": "{i % 2}"}}' if sep is None else
                f"x{i}{sep}{i % 2}" for i in range(5)]
        head = [] if sep is None else [f"text{sep}label"]
        data = "\n".join(head + good[:5 - len(head)]).encode() + b"\nbad \xff\n"
        (tmp_path / name).write_bytes(data)
        cases[name] = (None, rf"{name}:6: not UTF-8 \(byte 0xff at byte 5 of the line\)")
    for name, (text, message) in cases.items():
        path = str(tmp_path / name) if text is None else _write(tmp_path / name, text)
        task_type = "regression" if name == "multiline.csv" else "classification"
        with pytest.raises(tasks.TaskDataError, match=message):
            tasks.read_file_task(path, path, task_type)


class TinyPairs(tfds.core.GeneratorBasedBuilder):
    """A two-split pair-classification dataset prepared offline (a real TFDS builder)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "premise": tfds.features.Text(), "hypothesis": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=["entailment", "contradiction"]),
            "score": tfds.features.Scalar(dtype=np.float32)}))

    def _split_generators(self, dl_manager):
        rows = [("a cat sat", "a cat", 0, 4.5), ("a dog ran", "no dog", 1, 0.5),
                ("it rains", "it is wet", 0, 3.0)]
        return {"train": self._generate_examples(rows), "validation":
                self._generate_examples(rows[:2])}

    def _generate_examples(self, rows):
        for i, (premise, hypothesis, label, score) in enumerate(rows):
            yield i, {"premise": premise, "hypothesis": hypothesis, "label": label,
                      "score": score}


def test_tfds_task_pairs_and_regression(tmp_path):
    data_dir = str(tmp_path / "tfds")
    info, train, dev = tasks.read_tfds_task("tiny_pairs", data_dir, text_column="premise",
                                            text_b_column="hypothesis")
    assert info.task_type == "classification"
    assert info.labels == ("entailment", "contradiction") and info.is_pair
    assert sorted(zip(train.texts, train.texts_b, train.labels.tolist())) == [
        ("a cat sat", "a cat", 0), ("a dog ran", "no dog", 1), ("it rains", "it is wet", 0)]
    assert len(dev) == 2
    info, train, _ = tasks.read_tfds_task("tiny_pairs", data_dir, text_column="premise",
                                          label_column="score")
    assert info.task_type == "regression" and sorted(train.labels.tolist()) == [0.5, 3.0, 4.5]
    with pytest.raises(tasks.TaskDataError, match=r"text features \['premise', 'hypothesis'\]|"
                                                  r"text features \['hypothesis', 'premise'\]"):
        tasks.read_tfds_task("tiny_pairs", data_dir)
    with pytest.raises(tasks.TaskDataError, match="no split 'test'; splits: "):
        tasks.read_tfds_task("tiny_pairs", data_dir, dev_split="test", text_column="premise")


# ---------------------------------------------------------------------------------------------
# Model and optimizer.

def test_layerwise_decay_exponents_in_the_finetuning_optimizer(assert_config_round_trip):
    config = build_finetuning_config("debug_tiny", None, ["finetune.layerwise_lr_decay=0.5"])
    model = classifier.build_classifier(config, num_outputs=3, seed=1)
    assert_config_round_trip(model)
    opt_config = loop.finetuning_optimizer_config(config)
    assert (opt_config.name, opt_config.learning_rate, opt_config.warmup_fraction) == (
        "adamw", config.finetune.learning_rate, 0.1)
    # The reference's fine-tuning AdamW, whatever pre-training used.
    assert (opt_config.warmup_steps, opt_config.weight_decay, opt_config.beta_1,
            opt_config.beta_2, opt_config.epsilon, opt_config.clip_norm,
            opt_config.bias_correction, opt_config.decay_power,
            opt_config.end_learning_rate) == (0, 0.01, 0.9, 0.999, 1e-6, 1.0, False, 1.0, 0.0)
    multipliers = layerwise_lr_multipliers(model.encoder, model.head.trainable_variables, 0.5)
    optimizer = build_optimizer(opt_config, 10, model, multipliers)
    got = optimizer.lr_multipliers
    num_layers = config.model.num_layers  # L = 2: head d^0, top d^2, bottom d^3, embeddings d^4
    for v in model.head.trainable_variables:
        assert got[v.path] == 1.0
    for v in model.encoder.transformer_layers[-1].trainable_variables:
        assert got[v.path] == 0.5 ** 2
    for v in model.encoder.transformer_layers[0].trainable_variables:
        assert got[v.path] == 0.5 ** (num_layers + 1)
    for v in model.encoder.embedding_variables():
        assert got[v.path] == 0.5 ** (num_layers + 2)
    assert {v.path for v in model.trainable_variables} == set(got)


def test_loss_is_summed_over_the_batch_by_default():
    assert build_finetuning_config(None, None).finetune.loss_reduction == "sum"
    labels = tf.constant([0, 1])
    logits = tf.constant([[0.0, 0.0], [0.0, np.log(3.0)]])
    # Per example: −log(1/2) and −log(3/4); the reference sums them (run_finetuning.py).
    per_example = [np.log(2.0), np.log(4 / 3)]
    assert float(loop.loss_fn("classification", "sum")(labels, logits)) == pytest.approx(
        sum(per_example))
    assert float(loop.loss_fn("classification", "mean")(labels, logits)) == pytest.approx(
        np.mean(per_example))
    scores = tf.constant([[1.0], [2.5]])
    assert float(loop.loss_fn("regression", "sum")(tf.constant([0.0, 0.5]), scores)) == \
        pytest.approx(1.0 + 4.0)
    with pytest.raises(ConfigError, match="finetune.loss_reduction='avg': expected one of sum"):
        build_finetuning_config(None, None, ["finetune.loss_reduction=avg"])
    with pytest.raises(ConfigError, match="finetune.keep='first': expected one of last, best"):
        build_finetuning_config(None, None, ["finetune.keep=first"])


def test_classifier_kernel_starts_glorot_uniform():
    config = build_finetuning_config("electra_small", None)
    model = classifier.build_classifier(config, num_outputs=3, seed=1)
    kernel = model.head.dense.kernel.numpy()  # [256, 3]
    limit = np.sqrt(6 / (256 + 3))  # the reference's tf.layers.dense default (glorot-uniform)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.1)  # uniform(−l, l)
    assert not model.head.dense.bias.numpy().any()


def test_per_size_defaults_and_their_sources():
    def finetune(name):
        return build_finetuning_config(name, None).finetune
    # configure_finetuning.py:54-59 (every size), :149-151 (Large); Clark et al. Table 7 (Small).
    assert (finetune("electra_base").learning_rate, finetune("electra_base").layerwise_lr_decay,
            finetune("electra_base").weight_decay, finetune("electra_base").epochs) == (
        1e-4, 0.8, 0.01, 3)
    assert (finetune("electra_small").learning_rate,
            finetune("electra_small_released").learning_rate) == (3e-4, 3e-4)
    assert (finetune("electra_large").learning_rate,
            finetune("electra_large").layerwise_lr_decay) == (5e-5, 0.9)
    for name in ("debug_tiny", "demo"):  # measured here: tiny models need larger rates
        assert finetune(name).learning_rate == 1e-3
    for name in ("electra_small", "electra_large", "debug_tiny", "demo"):
        assert (finetune(name).loss_reduction, finetune(name).keep) == ("sum", "last")


# ---------------------------------------------------------------------------------------------
# End to end on the demo task.

@pytest.fixture(scope="module")
def demo_task(tmp_path_factory):
    return build_demo_task(str(tmp_path_factory.mktemp("demo_task")), seed=0,
                           train_per_label=160, dev_per_label=40, words_per_passage=30)


def test_finetune_cli_beats_majority_baseline_over_seeds(demo_task, tmp_path, capsys):
    out = str(tmp_path / "ft")
    # debug_tiny's packaged defaults (lr 1e-3, sum over the batch, keep the last epoch).
    rc = finetune.main([
        "--init", "none", "--config", "debug_tiny", "--output_dir", out,
        "--train", demo_task["train"], "--dev", demo_task["dev"], "--seeds", "1,2",
        "--set", "finetune.epochs=3"])
    assert rc == 0
    console = capsys.readouterr().out
    assert "seed 2 epoch 3/3" in console and "seed 2 dev final (epoch 3)" in console
    assert "median over seeds [1, 2], final epoch" in console
    summary = json.load(open(os.path.join(out, classifier.SUMMARY_FILE)))
    assert summary["seeds"] == [1, 2] and summary["main_metric"] == "accuracy"
    assert summary["kept"] == "final"
    for which in ("final", "best"):
        accuracies = [summary["runs"][s][which]["accuracy"] for s in ("1", "2")]
        assert summary["median"][which]["accuracy"] == pytest.approx(np.median(accuracies))
    # Balanced 3-way task: the majority-class baseline is 1/3. The final epoch is what the
    # reference reports.
    accuracies = [summary["runs"][s]["final"]["accuracy"] for s in ("1", "2")]
    assert min(accuracies) > 1 / 3 + 0.2, accuracies
    run_dir = os.path.join(out, "seed_1")
    for name in ("config.yaml", "config.json", "vocab.txt", "tokenizer.json", "label_map.json",
                 classifier.WEIGHTS_FILE, loop.METRICS_FILE):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert any(f.startswith("events.out") for f in os.listdir(os.path.join(run_dir, "dev")))
    record = json.load(open(os.path.join(run_dir, loop.METRICS_FILE)))
    losses = [e["train_loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0], losses
    best = max(record["epochs"], key=lambda e: e["accuracy"])
    assert record["best"]["epoch"] == best["epoch"] and record["final"]["epoch"] == 3
    assert record["kept"] == "final"
    # The summed loss: the gradient of a 16-example sum exceeds the clip norm on most steps.
    assert record["epochs"][0]["clipped"] > 0.5, record["epochs"][0]
    # The saved weights are the last epoch's: reloading reproduces its dev metrics exactly.
    config, tokenizer, task, model = classifier.load_classifier(run_dir)
    _, _, dev = tasks.read_file_task(demo_task["train"], demo_task["dev"])
    features = loop.encode_split(tokenizer, dev, config.finetune.seq_length)
    logits = loop.predict_logits(lambda b: model(b, training=False), features)
    reloaded = loop.task_metrics(task, dev.labels, logits)
    assert reloaded == pytest.approx({k: record["final"][k] for k in reloaded}, abs=1e-9)


@pytest.mark.parametrize("keep", ["last", "best"])
def test_keep_saves_the_last_or_the_best_epoch(tmp_path, monkeypatch, keep):
    config = build_finetuning_config("debug_tiny", None, [
        "finetune.epochs=3", f"finetune.keep={keep}", "finetune.batch_size=4"])
    task = tasks.TaskInfo("classification", ("a", "b"), "text", None, "label")
    rng = np.random.default_rng(0)
    features = {"token_ids": rng.integers(5, 100, (8, 32)).astype(np.int32),
                "segment_ids": np.zeros((8, 32), np.int32),
                "padding_mask": np.ones((8, 32), np.int32)}
    labels = np.array([0, 1] * 4, np.int32)
    # Scripted dev scores, so that the best epoch (2) is neither the first nor the last; the
    # logits each evaluation saw are kept to compare with the saved model's.
    scores, seen = iter([0.5, 0.9, 0.6]), []
    monkeypatch.setattr(loop, "task_metrics", lambda task, labels, logits: (
        seen.append(logits), {"accuracy": next(scores)})[1])
    run = loop.finetune_once(config, tokenizer_from_config(config.data), task, features, labels,
                             features, labels, str(tmp_path / "run"), seed=3, echo=lambda _: None)
    assert (run.final["epoch"], run.best["epoch"], run.best["accuracy"]) == (3, 2, 0.9)
    assert run.kept == {"last": "final", "best": "best"}[keep]
    record = json.load(open(tmp_path / "run" / loop.METRICS_FILE))
    assert (record["kept"], record["final"], record["best"]) == (run.kept, run.final, run.best)
    _, _, _, model = classifier.load_classifier(str(tmp_path / "run"))
    logits = loop.predict_logits(lambda b: model(b, training=False), features)
    # Eager vs tf.function: the same weights give logits equal to float32 round-off.
    np.testing.assert_allclose(logits, seen[2 if keep == "last" else 1], atol=1e-5)
    assert np.abs(seen[1] - seen[2]).max() > 1e-3  # the two epochs' models differ


def test_init_from_pretrained_starts_from_its_weights(tmp_path, capsys):
    config = load_config("debug_tiny")  # the pre-training config, saved with the model
    tokenizer = tokenizer_from_config(config.data)
    ft_config = build_finetuning_config("debug_tiny", None)
    pretrained = classifier.build_classifier(ft_config, 1, seed=7).encoder
    model_dir = tmp_path / "pretrain_run"
    save_pretrained(str(model_dir / "pretrained"), config, tokenizer, pretrained)
    # What users have: a text that starts with a quote, a 135 kB e-mail, a blank line.
    texts = ['"quoted" start', "mail " * 27_000] + [f"example {i}" for i in range(2, 8)]
    train = _write(tmp_path / "train.tsv", "text\tlabel\n" + "".join(
        f"{text}\t{i % 2}\n" + "\n" * (i == 3) for i, text in enumerate(texts)))
    # A config whose model differs from the pre-trained one is refused, naming the field.
    rc = finetune.main(["--init", str(model_dir), "--output_dir", str(tmp_path / "bad"),
                        "--config", "debug_tiny", "--set", "model.num_layers=3",
                        "--train", train, "--dev", train])
    assert rc == 2
    assert "model.num_layers" in capsys.readouterr().err
    # lr 0 for one step: the fine-tuned encoder must equal the pre-trained one.
    out = str(tmp_path / "ft")
    # One seed, as a user types it (--seeds 1 was refused as "type int, expected str").
    assert build_finetuning_config("debug_tiny", None,
                                   ["finetune.seeds=1"]).finetune.seeds == "1"
    rc = finetune.main(["--init", str(model_dir), "--output_dir", out, "--train", train,
                        "--dev", train, "--seeds", "1", "--set", "finetune.epochs=1",
                        "--set", "finetune.batch_size=8", "--set", "finetune.warmup_fraction=1"])
    assert rc == 0
    assert f"fine-tuning on 8 examples ({train}, 1 blank line skipped)" in capsys.readouterr().out
    saved, _, _, model = classifier.load_classifier(out)
    for a, b in zip(model.encoder.trainable_variables, pretrained.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # No --config: the model's network is debug_tiny's, so its packaged fine-tuning defaults
    # (configs/finetuning/debug_tiny.yaml) apply under the --set values.
    assert (saved.finetune.seq_length, saved.finetune.epochs, saved.finetune.batch_size,
            saved.finetune.warmup_fraction, saved.finetune.log_every) == (32, 1, 8, 1.0, 5)
    assert json.load(open(os.path.join(out, "config.json")))["init"].endswith("pretrained")


def test_finetune_cli_reports_bad_data_without_traceback(tmp_path, capsys):
    train = _write(tmp_path / "train.tsv", "sentence\tlabel\nx\ta\n")
    rc = finetune.main(["--init", "none", "--config", "debug_tiny", "--output_dir",
                        str(tmp_path / "o"), "--train", train, "--dev", train])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "no column 'text'; columns present: sentence, label" in err
    assert finetune.main(["--init", "none", "--output_dir", "o", "--tfds", "glue/sst2",
                          "--train", train]) == 2
