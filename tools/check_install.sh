#!/usr/bin/env bash
# `pip install .` (not editable) into a fresh venv, then, from outside the source tree, import
# every module of the installed package, check the packaged data (configs, vocabulary, corpus,
# TF Serving op registry) and run each console script's --help. It catches a subpackage or data
# file that setup.py leaves out, which the editable install of `make test` cannot see.
#
# Slow: it installs the whole TensorFlow family: 70 s with a warm pip cache on the idle 2-core
# VM, 4 minutes when it is busy (measured 2026-12), more when the wheels are downloaded. So it
# is not a pytest test; .ci/run runs it before `make test`.
# Usage: tools/check_install.sh  (PYTHON=python3.11 by default, as make)
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
source_root=$(pwd)
python=${PYTHON:-python3.11}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
start=$(date +%s)

# Built from a copy of the files git tracks or would track (not the working directory): a stale
# build/ or egg-info left by an earlier build would otherwise go into the wheel.
mkdir "$scratch/src"
git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$scratch/src"
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet "$scratch/src"

cd "$scratch"  # imports must come from the installed package, not from the source tree
"$scratch/venv/bin/python" - "$source_root" <<'EOF'
import importlib
import os
import pkgutil
import sys

source_root = sys.argv[1]
import electra_tf  # noqa: E402
import pipelines  # noqa: E402

installed = os.path.dirname(electra_tf.__file__)
assert not installed.startswith(source_root), f"imported from the source tree: {installed}"


def modules(package, root):
    """Every module below ``root`` (a package directory), as dotted names."""
    found = []
    for directory, _, files in os.walk(root):
        if "__init__.py" not in files or "__pycache__" in directory:
            continue
        relative = os.path.relpath(directory, root)
        prefix = ".".join([package] + ([] if relative == "." else relative.split(os.sep)))
        found += [prefix if f == "__init__.py" else f"{prefix}.{f[:-3]}" for f in files
                  if f.endswith(".py")]
    return sorted(found)


for package, module in (("electra_tf", electra_tf), ("pipelines", pipelines)):
    want = modules(package, os.path.join(source_root, package))
    have = sorted([package] + [m.name for m in pkgutil.walk_packages(module.__path__,
                                                                       package + ".")])
    missing = sorted(set(want) - set(have))
    assert not missing, f"not installed (add them to setup.py packages): {missing}"
    for name in have:
        importlib.import_module(name)
    print(f"imported {len(have)} {package} modules from {os.path.dirname(module.__file__)}")

from electra_tf import config_io, corpus, tokenizer  # noqa: E402
from electra_tf.serving import layout  # noqa: E402

configs = sorted(f[:-5] for f in os.listdir(os.path.join(source_root, "electra_tf", "configs"))
                 if f.endswith(".yaml"))
assert config_io.packaged_config_names() == configs, config_io.packaged_config_names()
config_io.load_config("debug_tiny")
data = [tokenizer.default_vocab_path(), layout.allowlist_path(), corpus.corpus_dir() +
        "/sotu_index.tsv", os.path.join(installed, "resources", "PROVENANCE.md")]
data += [corpus.corpus_path(name) for name in corpus.CORPUS_FILES]
absent = [path for path in data if not os.path.isfile(path)]
assert not absent, f"package data not installed (setup.py package_data): {absent}"
print(f"packaged data: {len(configs)} configs, {len(data)} resource files")
EOF

for cli in electra-pretrain electra-finetune electra-export electra-predict; do
    "$scratch/venv/bin/$cli" --help > /dev/null
done
echo "check_install: pip install . and every module, data file and console script OK" \
     "($(( $(date +%s) - start )) s)"
