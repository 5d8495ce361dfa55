"""The package's shape: subpackages by concept with empty ``__init__`` files, modules short
enough to read in one sitting, every package in setup.py, and TensorFlow-only modules that do
not bring in Keras (Beam workers and Model Garden's side of benchmarks/parity_model_garden.py
import them)."""

import ast
import os
import subprocess
import sys
import textwrap

import electra_tf

PACKAGE = os.path.dirname(os.path.abspath(electra_tf.__file__))
ROOT = os.path.dirname(PACKAGE)
# Modules that must import TensorFlow only (not Keras, keras-hub or tensorflow-text).
TENSORFLOW_ONLY = ("electra_tf.objective.masking", "electra_tf.objective.sampling",
                   "electra_tf.models.kernels", "electra_tf.training.records")
MAX_LINES = 400


def _modules():
    for directory, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def _packages():
    return sorted(os.path.relpath(directory, ROOT).replace(os.sep, ".")
                  for directory, _, files in os.walk(PACKAGE) if "__init__.py" in files)


def test_every_init_is_empty_and_no_module_is_long():
    # An import in an __init__ runs for every module below it (Keras for the TF-only ones).
    inits = [p for p in _modules() if os.path.basename(p) == "__init__.py"]
    assert len(inits) == len(_packages()) >= 6
    assert [p for p in inits if os.path.getsize(p)] == []
    lengths = {os.path.relpath(p, ROOT): sum(1 for _ in open(p, encoding="utf-8"))
               for p in _modules()}
    assert {p: n for p, n in lengths.items() if n > MAX_LINES} == {}


def test_setup_lists_every_package():
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    (packages,) = [ast.literal_eval(k.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Call) for k in node.keywords if k.arg == "packages"]
    assert sorted(p for p in packages if p.startswith("electra_tf")) == _packages()


def _imported_roots(module: str, seen: set) -> set:
    """Top-level names imported by ``module`` and the electra_tf modules it imports."""
    seen.add(module)
    path = os.path.join(ROOT, *module.split(".")) + ".py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    roots = set()
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            roots.add(name.split(".")[0])
            targets = [name] + ([f"{name}.{a.name}" for a in node.names]
                                if isinstance(node, ast.ImportFrom) else [])
            for target in targets:
                if (target.startswith("electra_tf.") and target not in seen
                        and os.path.exists(os.path.join(ROOT, *target.split(".")) + ".py")):
                    roots |= _imported_roots(target, seen)
    return roots


def test_tensorflow_only_modules_do_not_import_keras():
    for module in TENSORFLOW_ONLY:
        roots = _imported_roots(module, set())
        assert not roots & {"keras", "keras_hub", "tf_keras", "tensorflow_text"}, module
    # This TensorFlow (2.20) loads Keras modules itself on `import tensorflow`, so "no keras in
    # sys.modules" cannot hold; nothing beyond what TensorFlow loads may come in.
    script = textwrap.dedent(f"""
        import sys
        import tensorflow
        before = set(sys.modules)
        import {", ".join(TENSORFLOW_ONLY)}
        print(sorted(m for m in set(sys.modules) - before if "keras" in m.lower()))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=ROOT,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"
