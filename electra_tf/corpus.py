"""The public-domain English corpus that ships with electra_tf (see resources/PROVENANCE.md).

Format of every file: UTF-8, gzip-compressed, one paragraph per line, documents separated by one
blank line.
"""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Iterator

# Source name → file name. The names double as labels of the demo task.
CORPUS_FILES = {
    "austen": "jane_austen.txt.gz",
    "moby_dick": "moby_dick.txt.gz",
    "sotu": "sotu.txt.gz",
}


def corpus_dir() -> str:
    """Directory holding the packaged corpus files."""
    return str(resources.files("electra_tf") / "resources" / "corpus")


def corpus_path(name: str) -> str:
    """Path of one packaged corpus file by source name (``austen``, ``moby_dick``, ``sotu``)."""
    if name not in CORPUS_FILES:
        raise KeyError(f"unknown corpus {name!r}; available: {', '.join(CORPUS_FILES)}")
    return str(resources.files("electra_tf") / "resources" / "corpus" / CORPUS_FILES[name])


def corpus_glob() -> str:
    """A glob matching every packaged corpus text file (input for the Beam pipeline)."""
    return corpus_dir() + "/*.txt.gz"


def read_documents(path: str) -> Iterator[list[str]]:
    """Yields each document of a corpus file as its list of non-empty lines."""
    lines: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.strip():
                lines.append(line)
            elif lines:
                yield lines
                lines = []
    if lines:
        yield lines
