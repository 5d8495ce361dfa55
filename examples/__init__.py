"""Worked examples on the packaged corpus: ``python -m examples.demo`` is ``make demo``."""
