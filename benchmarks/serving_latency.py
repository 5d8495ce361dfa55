"""Latency of an exported classifier's ``serving_default`` signature (raw text in).

Measures what TF Serving executes for a request — in-graph tokenization + encoder + head —
by calling the loaded SavedModel's signature in this process (no network, no JSON). Each
call's wall time includes converting the outputs to numpy. Inputs are real passages of the
packaged corpus (about 40 words each).

Usage:
  python benchmarks/serving_latency.py                      # builds a demo-config export
  python benchmarks/serving_latency.py --model exports/mytask --iterations 500
  python benchmarks/serving_latency.py --config electra_small

Writes ``benchmarks/results/serving_latency.json`` (p50/p90/p99/mean in milliseconds and
examples per second for batch 1 and batch 32, with the machine and versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

from electra_tf import corpus
from electra_tf.config_io import load_config
from electra_tf.finetuning.config import build_finetuning_config
from electra_tf.finetuning import classifier
from electra_tf.finetuning.tasks import TaskInfo
from electra_tf.serving import export
from electra_tf.serving.layout import export_metadata, version_dir
from electra_tf.tokenizer import tokenizer_from_config

BATCH_SIZES = (1, 32)


def build_export(config_name: str, directory: str) -> str:
    """Exports a randomly initialised 3-label classifier of ``config_name`` (latency does not
    depend on the weights); returns the model directory."""
    config = build_finetuning_config(config_name, None)
    task = TaskInfo("classification", ("austen", "moby_dick", "sotu"), "text", None, "label")
    model = classifier.build_classifier(config, task.num_outputs, seed=0)
    run_dir = os.path.join(directory, "run")
    classifier.save_classifier(run_dir, config, tokenizer_from_config(config.data), task, model)
    export_dir = os.path.join(directory, "exports", config_name)
    export.export_classifier(run_dir, export_dir, echo=lambda line: None)
    return export_dir


def corpus_passages(count: int, words: int = 40) -> list[str]:
    """``count`` consecutive passages of ``words`` words from each packaged source, mixed."""
    per_source = -(-count // len(corpus.CORPUS_FILES))
    passages = []
    for name in corpus.CORPUS_FILES:
        tokens = []
        for document in corpus.read_documents(corpus.corpus_path(name)):
            tokens += " ".join(document).split()
            if len(tokens) >= per_source * words:
                break
        passages += [" ".join(tokens[i * words:(i + 1) * words]) for i in range(per_source)]
    return passages[:count]


def measure(fn, texts: list[str], batch_size: int, iterations: int, warmup: int = 5) -> dict:
    """Latency statistics of ``fn(text=batch)`` over ``iterations`` calls (after warm-up)."""
    batches = [[texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)]
               for i in range(iterations)]
    for batch in batches[:warmup]:
        {k: v.numpy() for k, v in fn(text=tf.constant(batch)).items()}
    times = []
    for batch in batches:
        start = time.perf_counter()
        {k: v.numpy() for k, v in fn(text=tf.constant(batch)).items()}
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000.0
    return {"batch_size": batch_size, "iterations": iterations,
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3),
            "examples_per_second": round(batch_size * len(ms) / float(ms.sum() / 1000.0), 1)}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="export directory (exports/NAME); default: build one "
                        "from --config with random weights")
    parser.add_argument("--config", default="demo", help="config of the built model (demo)")
    parser.add_argument("--iterations", type=int, default=300,
                        help="timed calls per batch size (batch 32: a third of it)")
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "serving_latency.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model or build_export(args.config, scratch)
        path = version_dir(model_dir)
        metadata = export_metadata(path)
        fn = tf.saved_model.load(path).signatures["serving_default"]
        texts = corpus_passages(256)
        results = [measure(fn, texts, b, args.iterations if b == 1 else max(
            10, args.iterations // 3)) for b in BATCH_SIZES]
    report = {
        "command": " ".join(["python", "benchmarks/serving_latency.py"] + (argv or sys.argv[1:])),
        "model": args.model or f"random-init {args.config} config",
        "seq_length": metadata.get("seq_length"),
        "input": "passages of 40 words from the packaged corpus",
        "measures": "in-process call of serving_default (tokenization + model), outputs to numpy",
        "results": results,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    # A shared machine's load shows up in the tail latencies.
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "versions": {"tensorflow": tf.__version__, "python": platform.python_version()},
    }
    if args.config and not args.model:
        cfg = load_config(args.config).model
        report["architecture"] = {"hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
                                  "embedding_size": cfg.embedding_size}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    for r in results:
        print(f"batch {r['batch_size']:>2}: p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
              f"({r['examples_per_second']:.0f} examples/s)")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
