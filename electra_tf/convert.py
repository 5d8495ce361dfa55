"""Convert checkpoints between electra_tf and the original TF1 code, Hugging Face and keras-hub.

    python -m electra_tf.convert import {tf1,hf,keras_hub} SRC --output_dir OUT
           [--config NAME] [--set K=V] [--vocab FILE] [--generator DIR] [--with_optimizer]
           [--allow_unmapped]
    python -m electra_tf.convert export {hf,keras_hub} MODEL_DIR --output_dir OUT

``import`` writes ``OUT/pretrained`` (``electra_tf.finetune --init OUT``) and, when the source has
a generator, ``OUT/ckpt-<step>`` (``electra_tf.pretrain --model_dir NEW --init_from OUT``).
Exit status: 0 done, 1 the conversion failed (``error: …`` lists every problem), 2 bad flags.
Mapping tables: docs/models.md; walk-through: docs/interop.md.
"""

from __future__ import annotations

import argparse
import sys

from electra_tf.config import ConfigError
from electra_tf.interop.commands import (EXPORT_FORMATS, IMPORT_FORMATS, export_model,
                                         import_model)
from electra_tf.interop.errors import ConvertError
from electra_tf.tokenizer import TokenizerError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m electra_tf.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="a TF1 checkpoint, Hugging Face model or keras-hub "
                                             "preset → OUT/pretrained (+ OUT/ckpt-<step>)")
    imp.add_argument("format", choices=IMPORT_FORMATS)
    imp.add_argument("source", metavar="SRC", help="TF1 checkpoint prefix or directory; Hugging "
                     "Face model directory; keras-hub preset directory")
    imp.add_argument("--output_dir", required=True)
    imp.add_argument("--config", default=None, help="packaged config name or YAML file; for "
                     "tf1 it must describe the checkpoint (ELECTRA-Small: electra_small_released)")
    imp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    imp.add_argument("--vocab", default=None, help="vocabulary file (default: SRC's vocab.txt)")
    imp.add_argument("--generator", default=None,
                     help="hf: the ElectraForMaskedLM directory of the generator")
    imp.add_argument("--with_optimizer", action="store_true",
                     help="tf1: also write global_step and the Adam moments")
    imp.add_argument("--allow_unmapped", action="store_true",
                     help="log source variables without a counterpart instead of failing")
    exp = commands.add_parser("export", help="a pre-training model directory → Hugging Face "
                                             "models or a keras-hub preset")
    exp.add_argument("format", choices=EXPORT_FORMATS)
    exp.add_argument("model_dir", metavar="MODEL_DIR")
    exp.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "import":
        if args.generator and args.format != "hf":
            imp.error("--generator is for import hf (TF1 checkpoints hold both networks)")
        if args.with_optimizer and args.format != "tf1":
            imp.error("--with_optimizer is for import tf1 (the other formats hold no optimizer)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "import":
            import_model(args.format, args.source, args.output_dir, args.config, args.set,
                         args.vocab, args.generator, args.with_optimizer, args.allow_unmapped)
        else:
            export_model(args.format, args.model_dir, args.output_dir)
    except (ConvertError, ConfigError, TokenizerError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
