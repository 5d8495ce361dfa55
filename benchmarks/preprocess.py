"""Preprocessing throughput: the packaged corpus → TFRecords on disk, tokens per second per core.

Usage::

    python benchmarks/preprocess.py [--output benchmarks/results/preprocess.json]
        [--max_seq_length 128] [--repeat 4] [--original_dir DIR]

Measured, each in a fresh process with TensorFlow pinned to one intra-op and one inter-op
thread per process (``TF_NUM_INTRAOP_THREADS=TF_NUM_INTEROP_THREADS=1``, inherited by Beam's
worker processes):

* ``tokenizer_fast``: ``electra_tf.tokenizer.Tokenizer(fast=True)``, the pipeline's, alone on
  the corpus lines, batched by about 1 MiB of text as the pipeline does (the pipeline's
  ceiling); ``tokenizer_default``: the same with ``fast=False`` (WordpieceTokenizer);
* ``pipeline_1_worker``, ``pipeline_2_workers``: ``pipelines.build_pretraining_data`` end to
  end (read → tokenize → pack → shard → TFRecords + metadata on disk) on the DirectRunner,
  in-process and with ``--direct_num_workers=2 --direct_running_mode=multi_processing``;
* ``original`` (with ``--original_dir``, a checkout of google-research/electra):
  its ``build_pretraining_dataset.py`` on the same corpus, decompressed, one process.

The pipelines also run on ``--repeat`` (default 4) copies of the corpus, as distinct sources,
so that the fixed costs (pipeline start-up, one TensorFlow import per worker process) weigh
less.

Each row gives wall seconds, CPU seconds of every process involved (the worker processes
included) and tokens per wall second and per CPU second. Time spent importing TensorFlow and
Beam is excluded; pipeline construction, worker start-up, tokenizer loading and writing are
included. ``tokens_in`` is what was tokenized (the original script tokenizes everything, then
drops what overflows its examples); ``tokens_written`` is what the examples hold.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import runpy
import subprocess
import sys
import tempfile
import time

CORPUS_FILES = ("jane_austen", "moby_dick", "sotu")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (Beam's worker processes)."""
    own, children = (resource.getrusage(resource.RUSAGE_SELF),
                     resource.getrusage(resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(run) -> dict:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = run()
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), **result}


def measure_tokenizer(args) -> dict:
    import tensorflow as tf

    from electra_tf import corpus
    from electra_tf.tokenizer import Tokenizer

    lines = [l for name in CORPUS_FILES
             for l in gzip.open(os.path.join(corpus.corpus_dir(), f"{name}.txt.gz")).read()
             .split(b"\n") if l.strip()]
    batches, batch, size = [], [], 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= 1 << 20:
            batches.append(batch)
            batch, size = [], 0
    batches.append(batch)

    def run():
        tokenizer = Tokenizer(fast=args.fast)
        tokenize = tf.function(tokenizer.tokenize, autograph=False,
                               input_signature=[tf.TensorSpec([None], tf.string)])
        tokens = sum(int(tokenize(b).flat_values.shape[0]) for b in batches)
        return {"tokens_in": tokens, "tokens_written": None}

    return _measure(run)


def measure_pipeline(args) -> dict:
    from electra_tf import corpus
    from pipelines.build_pretraining_data import BuildOptions, build_pretraining_data
    from pipelines.inputs import InputOptions

    beam_args = ([f"--direct_num_workers={args.workers}",
                  "--direct_running_mode=multi_processing"] if args.workers > 1 else [])
    with tempfile.TemporaryDirectory() as tmp:
        for copy in range(args.repeat):  # links: N distinct sources, no extra disk
            os.makedirs(os.path.join(tmp, "in", str(copy)))
            for name in CORPUS_FILES:
                os.symlink(os.path.join(corpus.corpus_dir(), f"{name}.txt.gz"),
                           os.path.join(tmp, "in", str(copy), f"{name}.txt.gz"))
        out = os.path.join(tmp, "out")

        def run():
            meta = build_pretraining_data(BuildOptions(
                output_dir=out, input=InputOptions(inputs=(os.path.join(tmp, "in", "*", "*"),)),
                max_seq_length=args.max_seq_length), beam_args)
            return {"tokens_in": meta["counts"]["tokens_in"],
                    "tokens_written": meta["counts"]["tokens_written"],
                    "examples": meta["counts"]["examples"]}

        return _measure(run)


def measure_original(args) -> dict:
    import tensorflow  # noqa: F401 - imported before the clock starts, as for ours

    from electra_tf import corpus
    from electra_tf.tokenizer import default_vocab_path

    with tempfile.TemporaryDirectory() as tmp:
        corpus_dir = os.path.join(tmp, "corpus")
        out = os.path.join(tmp, "out")
        os.makedirs(corpus_dir)
        os.makedirs(out)
        for name in CORPUS_FILES:
            with open(os.path.join(corpus_dir, f"{name}.txt"), "wb") as f:
                f.write(gzip.open(os.path.join(corpus.corpus_dir(), f"{name}.txt.gz")).read())
        sys.path.insert(0, args.original_dir)
        sys.argv = ["build_pretraining_dataset.py", "--corpus-dir", corpus_dir,
                    "--vocab-file", default_vocab_path(), "--output-dir", out,
                    "--max-seq-length", str(args.max_seq_length), "--num-processes", "1"]

        def run():
            runpy.run_path(os.path.join(args.original_dir, "build_pretraining_dataset.py"),
                           run_name="__main__")
            return {}

        row = _measure(run)
        # Counted after the clock stopped.
        row.update(tokens_in=_tokens_in_original_input(corpus_dir),
                   tokens_written=_tokens_in_records(out))
        return row


def _tokens_in_original_input(corpus_dir: str) -> int:
    """Tokens of the corpus by our tokenizer (the same vocabulary and normalization)."""
    import tensorflow as tf

    from electra_tf.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    total = 0
    for name in sorted(os.listdir(corpus_dir)):
        lines = [l for l in open(os.path.join(corpus_dir, name), "rb").read().split(b"\n")
                 if l.strip()]
        total += sum(int(tokenizer.tokenize(tf.constant(lines[i:i + 2000])).flat_values.shape[0])
                     for i in range(0, len(lines), 2000))
    return total


def _tokens_in_records(out: str) -> int:
    """Text tokens (not [CLS]/[SEP]/[PAD]) in the original script's records."""
    import tensorflow as tf

    from electra_tf.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    total = 0
    for name in os.listdir(out):
        for record in tf.data.TFRecordDataset(os.path.join(out, name)):
            ids = tf.train.Example.FromString(record.numpy()).features.feature["input_ids"]
            total += sum(i not in (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)
                         for i in ids.int64_list.value)
    return total


def _child(kind: str, args) -> dict:
    """Runs one measurement in a fresh process with TensorFlow pinned to one thread."""
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.getcwd())
    command = [sys.executable, __file__, "--_measure", kind, "--repeat", str(args.repeat),
               "--max_seq_length", str(args.max_seq_length), "--workers", str(args.workers)]
    if args.fast:
        command.append("--fast")
    if args.original_dir:
        command += ["--original_dir", args.original_dir]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(name: str, kind: str, args, workers: int = 1, repeat: int = 1,
         fast: bool = False) -> dict:
    args.workers, args.repeat, args.fast = workers, repeat, fast
    row = _child(kind, args)
    row["tokens_per_s"] = round(row["tokens_in"] / row["wall_s"])
    row["tokens_per_cpu_s"] = round(row["tokens_in"] / row["cpu_s"])
    print(f"{name:>24}: {row['tokens_in']:>10,} tokens in {row['wall_s']:6.1f} s wall, "
          f"{row['cpu_s']:6.1f} s CPU: {row['tokens_per_s'] / 1e6:.3f} M tokens/s, "
          f"{row['tokens_per_cpu_s'] / 1e6:.3f} M tokens/CPU-s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="benchmarks/results/preprocess.json")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=4,
                        help="also run the pipelines on this many copies of the corpus (1: not)")
    parser.add_argument("--original_dir", default="",
                        help="a google-research/electra checkout, to measure its script too")
    parser.add_argument("--_measure", default="", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        measure = {"tokenizer": measure_tokenizer, "pipeline": measure_pipeline,
                   "original": measure_original}[args._measure]
        print(json.dumps(measure(args)))
        return

    repeat = args.repeat
    load_before = os.getloadavg()
    rows = {"tokenizer_default": _row("tokenizer_default", "tokenizer", args),
            "tokenizer_fast": _row("tokenizer_fast", "tokenizer", args, fast=True),
            "pipeline_1_worker": _row("pipeline_1_worker", "pipeline", args),
            "pipeline_2_workers": _row("pipeline_2_workers", "pipeline", args, workers=2)}
    if repeat > 1:
        rows[f"pipeline_1_worker_x{repeat}"] = _row(f"pipeline_1_worker_x{repeat}", "pipeline",
                                                    args, repeat=repeat)
        rows[f"pipeline_2_workers_x{repeat}"] = _row(f"pipeline_2_workers_x{repeat}",
                                                     "pipeline", args, workers=2, repeat=repeat)
    if args.original_dir:
        rows["original"] = _row("original", "original", args)
    scaling = {"corpus": round(rows["pipeline_2_workers"]["tokens_per_s"]
                               / rows["pipeline_1_worker"]["tokens_per_s"], 2)}
    if repeat > 1:
        scaling[f"corpus_x{repeat}"] = round(
            rows[f"pipeline_2_workers_x{repeat}"]["tokens_per_s"]
            / rows[f"pipeline_1_worker_x{repeat}"]["tokens_per_s"], 2)
    result = {
        "command": " ".join(["python benchmarks/preprocess.py"] + sys.argv[1:]),
        "corpus": "electra_tf/resources/corpus/*.txt.gz (x N: N copies as distinct sources)",
        "max_seq_length": args.max_seq_length,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or
                    platform.machine(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "results": rows,
        "scaling_2_workers_wall": scaling,
    }
    if "original" in rows:
        result["speedup_per_cpu_s_vs_original"] = {
            name: round(rows[name]["tokens_per_cpu_s"] / rows["original"]["tokens_per_cpu_s"], 2)
            for name in rows if name != "original"}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
