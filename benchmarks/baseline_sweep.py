"""What keeps a small ELECTRA discriminator at the all-original baseline at temperature 1?

Pre-trains the `make demo` model (``electra_tf/configs/demo.yaml``: 2 layers, hidden 128, generator 1/2
width, seq 64, batch 32) on the packaged corpus under several variants of the recipe, each
through the real training loop (``run_pretraining``), and records per logged step the generator
loss and accuracy, the discriminator loss, replaced-token AUC, precision and recall, and the mean
cosine between the backbone's token outputs (``representation_cosine``), plus evaluations on the
validation split. Every variant changes one thing against ``t1`` (temperature 1, the paper's
recipe otherwise):

* ``t1``: temperature 1, lr 1e-3, warm-up 50 (the demo config at the paper's temperature);
* ``t3``: temperature 3 (what ``make demo`` uses);
* ``uniform``: replacements drawn uniformly from the vocabulary (``objective.replacements``);
* ``lr3e-4``: lr 3e-4, warm-up 100 (gentler start);
* ``bias_correction``: Adam with bias correction (early updates no longer ~3× larger);
* ``generator_quarter``: generator 1/4 of the discriminator's width instead of 1/2;
* ``mlm``: the MLM objective alone on the discriminator-sized encoder (a cosine reference);
* ``t1_long`` (only with ``--long``): 3,000 steps, lr 5e-4, warm-up 300.

Runs are resumable: rerunning the same command continues unfinished variants from their
checkpoints and reuses finished ones. Output: ``sweep.json`` (every logged point and a summary
row per variant) and ``sweep.png`` in ``--output_dir``.

Usage:
  python benchmarks/baseline_sweep.py [--output_dir benchmarks/results/baseline_sweep]
      [--work_dir /tmp/electra_baseline_sweep] [--steps 600] [--long] [--variants t1,uniform]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

VARIANTS = {
    "t1": (),
    "t3": ("objective.temperature=3.0",),
    "uniform": ("objective.replacements=uniform",),
    "lr3e-4": ("optimizer.learning_rate=3e-4", "optimizer.warmup_steps=100"),
    "bias_correction": ("optimizer.bias_correction=true",),
    "generator_quarter": ("generator.hidden_fraction=0.25",),
    "mlm": ("objective.objective=mlm",),
}
LONG = {"t1_long": ("optimizer.learning_rate=5e-4", "optimizer.warmup_steps=300",
                    "train.num_steps=3000")}
KEYS = ("generator_loss", "generator_accuracy", "discriminator_loss", "discriminator_auc",
        "discriminator_precision", "discriminator_recall", "representation_cosine")


def build_data(work_dir: str) -> str:
    """The packaged corpus as TFRecords by `make demo`'s own preprocessing, built once."""
    from electra_tf.config_io import load_config
    from examples.demo import preprocess

    data_dir = os.path.join(work_dir, "data")
    if not os.path.exists(os.path.join(data_dir, "COMPLETED")):
        preprocess(work_dir, load_config("demo"))
    return data_dir


def run_variant(name: str, overrides, steps: int, data_dir: str, work_dir: str) -> dict:
    from electra_tf.config_io import load_config
    from electra_tf.training.distribute import make_strategy
    from electra_tf.training.loop import run_pretraining

    base = ("objective.temperature=1.0", f"train.num_steps={steps}", "train.log_every=25",
            "train.eval_every=200", "train.checkpoint_every=200")
    config = load_config("demo", list(base) + list(overrides))
    model_dir = os.path.join(work_dir, "runs", name)
    start = time.perf_counter()
    print(f"== {name}: {' '.join(overrides) or '(temperature 1, the demo recipe otherwise)'}",
          flush=True)
    run_pretraining(config, data_dir, model_dir, make_strategy("cpu"), eval_pattern=data_dir,
                    echo=lambda line: print(f"  {line}", flush=True))
    rows = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    train = [{"step": r["step"], **{k: r[k] for k in KEYS if k in r}} for r in rows
             if r["split"] == "train"]
    # Means over 25-step windows: single steps are noisy at batch 32.
    windows = []
    for end in range(25, config.train.num_steps + 1, 25):
        chunk = [r for r in train if end - 25 < r["step"] <= end]
        windows.append({"step": end, **{k: sum(r[k] for r in chunk) / len(chunk)
                                        for k in KEYS if k in chunk[0]}})
    evals = [{"step": r["step"], **{k: r[k] for k in KEYS if k in r}} for r in rows
             if r["split"] == "eval"]
    return {"overrides": list(base) + list(overrides), "train": windows, "eval": evals,
            "seconds_this_call": round(time.perf_counter() - start, 1)}


def summarize(name: str, result: dict) -> dict:
    """Peak AUC and where it was, and the last window's values."""
    train = result["train"]
    last = train[-1]
    row = {"variant": name, "steps": last["step"], **{f"final_{k}": last.get(k) for k in KEYS}}
    if "discriminator_auc" in last:
        peak = max(train, key=lambda r: r["discriminator_auc"])
        row.update(peak_auc=peak["discriminator_auc"], peak_auc_step=peak["step"],
                   generator_loss_at_peak=peak["generator_loss"])
    return row


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("generator_loss", "generator MLM loss"),
              ("discriminator_auc", "replaced-token AUC (0.5 = baseline)"),
              ("representation_cosine", "mean cosine between token outputs"),
              ("discriminator_recall", "replaced-token recall at 0.5"))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    # One colour per variant in every panel (mlm has no AUC and would shift a colour cycle).
    colours = dict(zip(results, plt.get_cmap("tab10").colors))
    for ax, (key, title) in zip(axes.ravel(), panels):
        for name, result in results.items():
            points = [(r["step"], r[key]) for r in result["train"] if key in r]
            if points:
                ax.plot(*zip(*points), label=name, color=colours[name])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("demo model on the packaged corpus: one change at a time against t1 "
                 "(25-step means)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "benchmarks", "results",
                                                             "baseline_sweep"))
    parser.add_argument("--work_dir", default="/tmp/electra_baseline_sweep",
                        help="data and model_dirs (kept for resuming)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--long", action="store_true", help="also run t1_long (3,000 steps)")
    parser.add_argument("--variants", default="",
                        help="comma-separated subset (default: all)")
    args = parser.parse_args(argv)
    variants = dict(VARIANTS, **(LONG if args.long else {}))
    if args.variants:
        unknown = sorted(set(args.variants.split(",")) - set(variants))
        if unknown:
            parser.error(f"--variants: unknown {unknown}; known: {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    os.makedirs(args.output_dir, exist_ok=True)
    data_dir = build_data(args.work_dir)
    results = {name: run_variant(name, overrides, args.steps, data_dir, args.work_dir)
               for name, overrides in variants.items()}
    summary = [summarize(name, result) for name, result in results.items()]
    command = "python benchmarks/baseline_sweep.py " + " ".join(argv or sys.argv[1:])
    with open(os.path.join(args.output_dir, "sweep.json"), "w") as f:
        json.dump({"command": command.strip(), "config": "demo", "summary": summary,
                   "variants": results}, f, indent=1)
    plot(results, os.path.join(args.output_dir, "sweep.png"))
    print(f"{'variant':<18} {'peak AUC':>8} {'at step':>7} {'final AUC':>9} {'final cos':>9} "
          f"{'final gen loss':>14}")
    for row in summary:
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"{row['variant']:<18} {fmt(row.get('peak_auc')):>8} "
              f"{row.get('peak_auc_step', '-'):>7} {fmt(row['final_discriminator_auc']):>9} "
              f"{fmt(row['final_representation_cosine']):>9} "
              f"{fmt(row['final_generator_loss']):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
