"""Conversion errors: every problem of a source found in one pass, each naming the source
variable, our variable and the config key that decides it."""

from __future__ import annotations

from typing import Optional, Sequence

from electra_tf.interop.names import Param


class ConvertError(ValueError):
    """A source cannot be converted; ``problems`` lists each reason on its own line."""

    def __init__(self, problems: Sequence[str], source: str = ""):
        self.problems = list(problems)
        where = f"{source}: " if source else ""
        count = len(self.problems)
        super().__init__(f"{where}{count} problem{'s' if count != 1 else ''}:\n  "
                         + "\n  ".join(self.problems))


def missing(name: str, param: Param) -> str:
    return f"{name}: missing (electra_tf variable {param.ours}; {_keys(param.dims)})"


def unmapped(name: str, reason: str) -> str:
    return f"{name}: not mapped ({reason}); --allow_unmapped logs such names instead"


def wrong_shape(name: str, found: Sequence[int], expected: Sequence[int], keys: Sequence[str],
                param: Param, where: str = "the checkpoint") -> str:
    """``name: [256, 1024] in the checkpoint, [256, 512] expected (model.intermediate_size=512)``
    followed by our variable."""
    return (f"{name}: {list(found)} in {where}, {list(expected)} expected "
            f"({', '.join(keys)}); electra_tf variable {param.ours}")


def not_float(name: str, dtype: str, param: Optional[Param]) -> str:
    ours = f"electra_tf variable {param.ours}" if param else "no electra_tf variable"
    return f"{name}: dtype {dtype}, a floating-point tensor expected ({ours})"


def _keys(dims) -> str:
    keys = list(dict.fromkeys(d.key for d in dims))
    return ", ".join(keys)


def shape_problem(name: str, found: Sequence[int], expected_dims, param: Param,
                  where: str = "the checkpoint") -> Optional[str]:
    """A :func:`wrong_shape` message naming the config keys of the differing dimensions, or
    None when the shapes agree. ``expected_dims`` are :class:`~names.Dim`s in source order."""
    expected = [d.size for d in expected_dims]
    if list(found) == expected:
        return None
    if len(found) == len(expected):
        keys = [d.key for d, f in zip(expected_dims, found) if d.size != f]
    else:
        keys = [d.key for d in expected_dims]
    return wrong_shape(name, found, expected, list(dict.fromkeys(keys)), param, where)
