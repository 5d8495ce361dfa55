"""Writes electra_tf/resources/serving/tf_serving_ops.json for one tensorflow/serving tag.

TF Serving's model server links all TensorFlow ops plus ``@org_tensorflow_text//tensorflow_text:
ops_lib`` (tensorflow_serving/model_servers/BUILD, SUPPORTED_TENSORFLOW_OPS), at the TensorFlow
commit pinned in its WORKSPACE and the TF Text release pinned in tensorflow_serving/workspace.bzl.
This reads, for one serving tag:

- TensorFlow: every registered op with its attr names, from ``TF_GetAllOpList()`` of the
  ``tensorflow-cpu`` wheel of the same release (its libraries are loaded with ctypes in a fresh
  interpreter, never imported next to another TensorFlow);
- TF Text: every op registered by the ``cc_op_defs`` of the targets that ``ops_lib`` depends
  on, at the pinned release tag: ``REGISTER_OP`` with its ``.Attr`` names, and
  ``REGISTER_TF_OP_SHIM`` ops (``FastWordpieceTokenizeWithOffsets``, ``FastBertNormalize``...)
  with the name and attrs their kernel template declares (``kOpName``, ``Attrs()``). Run on
  v2.20.0, this reproduces the op registry of the installed tensorflow-text 2.20 exactly.

Usage (pip, git, and clones of github.com/tensorflow/serving and github.com/tensorflow/text):
  python tools/derive_serving_allowlist.py --serving_repo serving --text_repo text \
      --serving_tag 2.15.1 --output electra_tf/resources/serving/tf_serving_ops.json
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

# Runs in a fresh interpreter: prints the serialized OpList of the TensorFlow in argv[1].
_DUMP_OPS = """
import ctypes, os, sys
class Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t), ("free", ctypes.c_void_p)]
root = sys.argv[1]
ctypes.CDLL(os.path.join(root, "libtensorflow_framework.so.2"), mode=ctypes.RTLD_GLOBAL)
for name in ("libtensorflow_cc.so.2", "python/_pywrap_tensorflow_internal.so"):
    if os.path.exists(os.path.join(root, name)):
        lib = ctypes.CDLL(os.path.join(root, name), mode=ctypes.RTLD_GLOBAL)
        if hasattr(lib, "TF_GetAllOpList"):
            break
lib.TF_GetAllOpList.restype = ctypes.POINTER(Buffer)
ops = lib.TF_GetAllOpList().contents
sys.stdout.buffer.write(ctypes.string_at(ops.data, ops.length))
"""


def git_show(repo: str, rev: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def serving_pins(serving_repo: str, tag: str) -> tuple[str, str]:
    """(TF Text version, TensorFlow commit) pinned by a serving tag."""
    build = git_show(serving_repo, tag, "tensorflow_serving/model_servers/BUILD")
    if "@org_tensorflow_text//tensorflow_text:ops_lib" not in build:
        sys.exit(f"serving {tag} does not link tensorflow_text:ops_lib")
    workspace_bzl = git_show(serving_repo, tag, "tensorflow_serving/workspace.bzl")
    text = re.search(r'strip_prefix = "text-([0-9.]+)"', workspace_bzl).group(1)
    commit = re.search(r'git_commit = "([0-9a-f]+)"',
                       git_show(serving_repo, tag, "WORKSPACE")).group(1)
    return text, commit


def tensorflow_ops(version: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.11", "--platform",
                        "manylinux2014_x86_64", f"tensorflow-cpu=={version}", "-d", scratch],
                       check=True)
        wheel = next(os.path.join(scratch, f) for f in os.listdir(scratch) if f.endswith(".whl"))
        pattern = (r"tensorflow/(libtensorflow_(framework|cc)\.so\.2|"
                   r"python/_pywrap_tensorflow_internal\.so)")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(scratch, [n for n in archive.namelist()
                                         if re.fullmatch(pattern, n)])
        raw = subprocess.run([sys.executable, "-c", _DUMP_OPS,
                              os.path.join(scratch, "tensorflow")],
                             check=True, capture_output=True).stdout
    from tensorflow.core.framework import op_def_pb2

    op_list = op_def_pb2.OpList()
    op_list.ParseFromString(raw)
    return {op.name: sorted(a.name for a in op.attr) for op in op_list.op}


def git_grep(repo: str, rev: str, pattern: str, path: str) -> list[str]:
    found = subprocess.run(["git", "-C", repo, "grep", "-l", "-E", pattern, rev, "--", path],
                           capture_output=True, text=True).stdout
    return [line.split(":", 1)[1] for line in found.splitlines()]


def shim_op(text_repo: str, tag: str, cls: str) -> tuple[str, list[str]]:
    """Name and attr names of the op that kernel template class ``cls`` declares."""
    for path in git_grep(text_repo, tag, rf"class {cls}\b", "tensorflow_text/core/kernels"):
        source = git_show(text_repo, tag, path)
        start = re.search(rf"class {cls}\b[^;]*?\{{", source)
        if not start:
            continue
        following = re.search(r"\nclass \w+", source[start.end():])
        body = source[start.start():start.end() + (following.start() if following
                                                   else len(source))]
        name = re.search(r'kOpName\[\]\s*=\s*"([^"]+)"', body).group(1)
        # Attr names are literals ("name: type") or constants defined in the header.
        constants = {a or b: value for a, b, value in re.findall(
            r'(?:char (?:\w+<\w+>::)?(k\w+)\[\]|string_view (k\w+))\s*=\s*"([^"]*)"', source)}
        attrs = (re.search(r"Attrs\(\)\s*\{(.*?)\}\s*\n", body, re.S)
                 or re.search(rf"{cls}<\w+>::Attrs\(\)\s*\{{(.*?)\n\}}", source, re.S))
        items = re.findall(r'"(\w+)\s*:|StrCat\(\s*(k\w+)\s*,', attrs.group(1) if attrs else "")
        return name, sorted(literal or constants[constant] for literal, constant in items)
    sys.exit(f"tensorflow/text {tag}: no kernel template class {cls}")


def text_ops(text_repo: str, version: str) -> dict:
    tag = f"v{version}"
    build = git_show(text_repo, tag, "tensorflow_text/BUILD")
    deps = re.search(r'name = "ops_lib",.*?deps = \[(.*?)\]', build, re.S).group(1)
    ops = {}
    for target in re.findall(r'":(\w+)_cc"', deps):
        block = re.search(r'name = "%s",(.*?)\n\)' % target, build, re.S)
        for path in re.findall(r'"//tensorflow_text/core/ops:(\w+\.cc)"',
                               block.group(1) if block else ""):
            source = git_show(text_repo, tag, f"tensorflow_text/core/ops/{path}")
            for name, body in re.findall(r'REGISTER_OP\("([\w>]+)"\)(.*?);', source, re.S):
                ops[name] = sorted(re.findall(r'\.Attr\(\s*"(\w+)\s*:', body))
            for kernel in re.findall(r"REGISTER_TF_OP_SHIM\((\w+)Kernel\)", source):
                name, attrs = shim_op(text_repo, tag, kernel)
                ops[name] = attrs
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving_repo", required=True)
    parser.add_argument("--text_repo", required=True)
    parser.add_argument("--serving_tag", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    text_version, commit = serving_pins(args.serving_repo, args.serving_tag)
    core, text = tensorflow_ops(args.serving_tag), text_ops(args.text_repo, text_version)
    header = {
        "minimum_tensorflow_serving": args.serving_tag,
        "provenance": {
            "tensorflow_serving_tag": args.serving_tag,
            "tensorflow_commit_pinned_by_serving": commit,
            "tensorflow_ops_from": f"tensorflow-cpu=={args.serving_tag} wheel, TF_GetAllOpList()",
            "tensorflow_text_pinned_by_serving": text_version,
            "tensorflow_text_ops_from": f"tensorflow/text v{text_version}: REGISTER_OP and "
                                        "REGISTER_TF_OP_SHIM in the cc_op_defs of "
                                        "tensorflow_text:ops_lib's deps",
            "linked_by": "tensorflow_serving/model_servers/BUILD SUPPORTED_TENSORFLOW_OPS "
                         "(@org_tensorflow_text//tensorflow_text:ops_lib)",
        },
        "tensorflow_text_ops": sorted(text),
    }
    # One op per line, so that diffs between tags stay readable.
    ops = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}"
                     for k, v in sorted({**core, **text}.items()))
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, indent=1)[:-2] + ',\n "ops": {\n' + ops + "\n }\n}\n")
    print(f"{args.output}: {len(core)} TensorFlow ops + {len(text)} TF Text ops")


if __name__ == "__main__":
    main()
