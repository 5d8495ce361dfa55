"""Fine-tune a pre-trained ELECTRA discriminator on labelled text; optionally export it.

Examples:
  python -m electra_tf.finetune --init runs/small --output_dir ft/mytask \\
      --train train.tsv --dev dev.tsv --text_column text --label_column label
  python -m electra_tf.finetune --init none --config debug_tiny --output_dir ft/baseline \\
      --tfds glue/sst2 --data_dir ~/tensorflow_datasets --seeds 1,2,3
  python -m electra_tf.finetune --init runs/small --output_dir ft/stsb --tfds glue/stsb \\
      --export_dir exports/stsb

``--init MODEL_DIR`` loads a pre-trained discriminator (a pre-training ``--model_dir``, its
``pretrained/`` folder, or a converted model); its config is the default ``--config``, and its
model section and tokenizer must match the one given. ``--init none`` starts from random
weights of the config's model (the baseline every comparison needs). The fine-tuning config
(:mod:`electra_tf.finetuning.config`) takes the model and tokenizer from that config, and the
``finetune`` defaults for the model's size. As the reference, the saved (and exported) model is
the one after the last epoch (``--set finetune.keep=best`` keeps the best dev epoch); the console
and ``metrics.json`` report both the final and the best epoch's dev metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from electra_tf.config import Config, ConfigError
from electra_tf.config_io import override_keys
from electra_tf.finetuning.config import FinetuningConfig, build_finetuning_config


def check_same_model(config: FinetuningConfig, pretrained: Config, where: str) -> None:
    """The fine-tuning config must describe the pre-trained network (names each difference)."""
    diffs = [f"model.{k}: {where} has {getattr(pretrained.model, k)!r}, the config has "
             f"{getattr(config.model, k)!r}"
             for k in config.model.__dataclass_fields__
             if getattr(config.model, k) != getattr(pretrained.model, k)]
    if config.data.lower_case != pretrained.data.lower_case:
        diffs.append(f"data.lower_case: {where} has {pretrained.data.lower_case!r}, the config "
                     f"has {config.data.lower_case!r}")
    if diffs:
        raise ConfigError(f"the config does not match the pre-trained model: {'; '.join(diffs)}"
                          " (leave out --config to use the model's own)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m electra_tf.finetune", description=__doc__.split("\n\n")[0],
        epilog="--set keys: " + "; ".join(k for k in override_keys(FinetuningConfig)
                                          if k.startswith(("finetune.", "model.dropout",
                                                           "model.attention", "data."))),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True,
                        help="pre-trained model directory, or 'none' for random weights")
    parser.add_argument("--output_dir", required=True, help="where the run(s) are written")
    parser.add_argument("--config", help="YAML config or packaged name (default: the "
                        "pre-trained model's config; ELECTRA-Small with --init none)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, repeatable (e.g. finetune.epochs=5)")
    data = parser.add_argument_group("data: files (TSV/CSV/JSONL with a header) or TFDS")
    data.add_argument("--train", help="training file")
    data.add_argument("--dev", help="evaluation file")
    data.add_argument("--tfds", help="TFDS dataset name, e.g. glue/sst2 (instead of files)")
    data.add_argument("--data_dir", help="TFDS data directory")
    data.add_argument("--train_split", default="train", help="TFDS training split")
    data.add_argument("--dev_split", default="validation",
                      help="TFDS evaluation split (glue/mnli: validation_matched)")
    data.add_argument("--text_column", help="first text column (files: default 'text'; "
                      "TFDS: GLUE's or the only text feature)")
    data.add_argument("--text_b_column", help="second text column: makes a pair task")
    data.add_argument("--label_column", default="label", help="label column (default: label)")
    data.add_argument("--task_type", choices=("classification", "regression"),
                      default="classification",
                      help="files only; TFDS infers it from the label feature")
    parser.add_argument("--seeds", help="comma-separated seeds, one run each "
                        "(= --set finetune.seeds=...)")
    parser.add_argument("--export_dir", help="also export a SavedModel into EXPORT_DIR/<version>/ "
                        "(TF Serving layout): the saved weights (finetune.keep: last epoch by "
                        "default) of the seed that scores highest on dev")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.tfds) == bool(args.train or args.dev):
        print("error: give either --train and --dev (files) or --tfds NAME", file=sys.stderr)
        return 2
    if not args.tfds and not (args.train and args.dev):
        print("error: --train and --dev are both required for file data", file=sys.stderr)
        return 2
    from electra_tf.finetuning.files import TaskDataError
    from electra_tf.tokenizer import TokenizerError

    try:
        run_dir, exported = _run(args)
    except (ConfigError, TaskDataError, TokenizerError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"fine-tuned model: {run_dir}" + (f"\nexported: {exported}" if exported else ""))
    return 0


def _run(args) -> tuple[str, Optional[str]]:
    """Returns the directory of the run with the highest dev score and the export's version
    directory (or None)."""
    # Heavy imports after argument parsing so that --help is instant.
    from electra_tf.finetuning import loop, tasks
    from electra_tf.tokenizer import tokenizer_from_config

    # Quoted, so YAML keeps the seeds as typed: bare, "1" would be an int and "010" octal 8.
    overrides = list(args.set) + ([f"finetune.seeds={json.dumps(args.seeds)}"] if args.seeds
                                  else [])
    # Data first: a bad file should fail before a model is loaded.
    if args.tfds:
        task, train, dev = tasks.read_tfds_task(
            args.tfds, args.data_dir, args.train_split, args.dev_split, args.text_column,
            args.text_b_column, args.label_column)
    else:
        task, train, dev = tasks.read_file_task(
            args.train, args.dev, args.task_type, args.text_column or "text",
            args.text_b_column, args.label_column)
    encoder, init = None, "none"
    if args.init.lower() == "none":
        config = build_finetuning_config(args.config, None, overrides)
        tokenizer = tokenizer_from_config(config.data)
    else:
        from electra_tf.models.pretrained import load_pretrained, resolve_pretrained_dir

        init = resolve_pretrained_dir(args.init)
        pretrained_config, tokenizer, encoder = load_pretrained(init)
        config = build_finetuning_config(args.config, init, overrides)
        check_same_model(config, pretrained_config, init)
    result = loop.run_finetuning(config, tokenizer, task, train, dev, args.output_dir, encoder,
                                 init)
    if args.export_dir:
        from electra_tf.serving.export import export_classifier

        return result.best_run_dir, export_classifier(
            result.best_run_dir, args.export_dir, warmup_texts=dev.texts[:4],
            warmup_texts_b=dev.texts_b[:4] if dev.texts_b else None)
    return result.best_run_dir, None


if __name__ == "__main__":
    sys.exit(main())
