"""``python -m electra_tf.pretrain``: ELECTRA pre-training from TFRecords.

Parses flags, builds the config and the strategy, and calls
:func:`electra_tf.training.loop.run_pretraining`. Rerunning the same command resumes from the
latest checkpoint in ``--model_dir``.

``model.vocab_size`` is taken from the vocabulary (``data.vocab_path``) unless the config file
or ``--set`` gives it; a given value that disagrees with the vocabulary is an error.

Exit status: 0 when ``train.num_steps`` is reached, 143 when stopped by SIGTERM after saving a
checkpoint (rerun to resume), 1 on a data/config/training error, 2 on bad flags.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import yaml

from electra_tf.config import ConfigError
from electra_tf.config_io import apply_overrides, load_config, override_keys, resolve_config_path

# electra_tf.training.distribute's
STRATEGIES = ("cpu", "gpu", "mirrored", "multi_worker", "tpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m electra_tf.pretrain",
        description="Pre-train ELECTRA (generator + discriminator) on TFRecords written by\n"
                    "pipelines.build_pretraining_data (or in the original ELECTRA format).\n"
                    "Rerunning the same command resumes from the latest checkpoint.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="keys for --set (section.key=value):\n  " + "\n  ".join(override_keys()))
    parser.add_argument("--config", default="electra_small",
                        help="YAML file or packaged config name (debug_tiny, demo, "
                             "electra_small, electra_base, electra_large; default electra_small)")
    parser.add_argument("--data", required=True,
                        help="training TFRecords: a glob (gs:// works) or a data directory "
                             "(its train split)")
    parser.add_argument("--model_dir", required=True,
                        help="checkpoints, metrics.jsonl, TensorBoard logs, config and the final "
                             "pretrained/ model; an existing run there is resumed")
    parser.add_argument("--strategy", default="cpu", choices=STRATEGIES,
                        help="tf.distribute strategy (default cpu)")
    parser.add_argument("--tpu", default="",
                        help="TPU name or grpc:// address, or 'local' for this TPU VM's own TPU "
                             "(--strategy=tpu; empty reads TPU_NAME)")
    parser.add_argument("--eval_data", default=None,
                        help="validation TFRecords (glob, or a data directory: its validation "
                             "split), evaluated every train.eval_every steps")
    parser.add_argument("--init_from", default=None,
                        help="another pre-training model_dir (or checkpoint) to take the model "
                             "weights from; fresh optimizer and step")
    parser.add_argument("--init_optimizer", action="store_true",
                        help="with --init_from: also take its optimizer (step and Adam moments), "
                             "e.g. from python -m electra_tf.convert import tf1 --with_optimizer")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable), e.g. --set "
                             "train.num_steps=1000 --set train.batch_size=64")
    parser.add_argument("--skip_corrupt", action="store_true",
                        help="scan every shard first and train on the records before any damage "
                             "instead of failing on a damaged shard")
    return parser


def _sets_vocab_size(config: str, overrides: list[str]) -> bool:
    """Whether the user chose ``model.vocab_size``: with ``--set`` or in the ``--config`` YAML.

    (No packaged config sets it.) Call after ``load_config`` has accepted both.
    """
    if any(item.split("=", 1)[0].strip() == "model.vocab_size" for item in overrides):
        return True
    with open(resolve_config_path(config), encoding="utf-8") as f:
        return "vocab_size" in ((yaml.safe_load(f) or {}).get("model") or {})


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.init_optimizer and not args.init_from:
        parser.error("--init_optimizer needs --init_from")
    try:
        config = load_config(args.config, tuple(args.set))
    except ConfigError as e:
        parser.error(str(e))
    # TensorFlow loads only now, so --help and flag errors are instant.
    from electra_tf.tokenizer import TokenizerError, tokenizer_from_config
    from electra_tf.training import distribute
    from electra_tf.training.checkpointing import TrainingError
    from electra_tf.training.input import DataError
    from electra_tf.training.loop import run_pretraining
    from electra_tf.training.preemption import EXIT_PREEMPTED

    try:
        # First: multi_worker's collectives must be set up before TensorFlow runs anything.
        strategy = distribute.make_strategy(args.strategy, args.tpu)
        if not _sets_vocab_size(args.config, args.set):
            # One embedding row per vocabulary line, as data.vocab_path alone should say.
            vocab_size = tokenizer_from_config(config.data).vocab_size
            config = apply_overrides(config, [f"model.vocab_size={vocab_size}"])
        result = run_pretraining(
            config, args.data, args.model_dir, strategy, eval_pattern=args.eval_data,
            init_from=args.init_from, skip_corrupt=args.skip_corrupt,
            init_optimizer=args.init_optimizer)
    except (DataError, TrainingError, distribute.StrategyError,
            TokenizerError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0 if result.completed else EXIT_PREEMPTED


if __name__ == "__main__":
    sys.exit(main())
