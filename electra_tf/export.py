"""Export a fine-tuned classifier as a SavedModel that takes raw text (TF Serving layout).

``python -m electra_tf.export --run ft/mytask --export_dir exports/mytask`` writes
``exports/mytask/<version>/`` (version = next free integer); the layout and the signature are
described in :mod:`electra_tf.serving.export`, which does the work.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from electra_tf.serving.export import export_classifier


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m electra_tf.export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True,
                        help="fine-tuning run directory (electra_tf.finetune --output_dir, or "
                             "one of its seed_N folders)")
    parser.add_argument("--export_dir", required=True,
                        help="model directory; the version goes to EXPORT_DIR/<version>/")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    args = parser.parse_args(argv)
    from electra_tf.config import ConfigError
    from electra_tf.finetuning.files import TaskDataError
    from electra_tf.tokenizer import TokenizerError

    try:
        export_classifier(args.run, args.export_dir, args.version)
    except (ConfigError, TaskDataError, TokenizerError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
