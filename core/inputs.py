"""Model inputs: their specs, resolving concrete shapes (fixed dims + --input-shape) and synthetic input data.
Shared by the agent's runner, the optimizers' data loading and the controller's pre-flight check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import JobError


@dataclass
class InputSpec:
    """One model input: name, numpy dtype and shape (ints, or a str/None for a dynamic dimension)."""

    name: str
    dtype: np.dtype
    shape: list


def resolve_shapes(specs: list[InputSpec], given: dict[str, list[int]]) -> dict[str, list[int]]:
    """Concrete shape of every input: fixed dims from the model, dynamic ones from --input-shape."""
    names = [s.name for s in specs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise JobError("INVALID_INPUT", f"--input-shape names {', '.join(repr(u) for u in unknown)}, but "
                                        f"the model's inputs are: {', '.join(names)}")
    shapes, unfixed = {}, []
    for spec in specs:
        if spec.name in given:
            dims = list(given[spec.name])
            if len(dims) != len(spec.shape):
                raise JobError("INVALID_INPUT",
                               f"input '{spec.name}' has {len(spec.shape)} dimensions {_fmt(spec.shape)}, "
                               f"but --input-shape gave {len(dims)}: {_fmt(dims)}")
            for i, (want, got) in enumerate(zip(spec.shape, dims)):
                if isinstance(want, int) and want != got:
                    raise JobError("INVALID_INPUT",
                                   f"input '{spec.name}' has shape {_fmt(spec.shape)}: dimension {i} is "
                                   f"fixed at {want}, but --input-shape gave {_fmt(dims)}")
                if got <= 0:
                    raise JobError("INVALID_INPUT", f"--input-shape {spec.name}={_fmt(dims)}: every "
                                                    "dimension must be a positive integer")
            shapes[spec.name] = dims
        elif all(isinstance(d, int) for d in spec.shape):
            shapes[spec.name] = list(spec.shape)
        else:
            unfixed.append(spec)
    if unfixed:
        parts = [f"'{s.name}' {_fmt(s.shape)} (dynamic: "
                 f"{', '.join(str(d) if d else '?' for d in s.shape if not isinstance(d, int))})"
                 for s in unfixed]
        example = " ".join(f"--input-shape {s.name}="
                           + ",".join(str(d) if isinstance(d, int) else "N" for d in s.shape)
                           for s in unfixed)
        raise JobError("INVALID_INPUT", f"the model has dynamic dimensions with no value: {'; '.join(parts)}; "
                                        f"fix them with {example}")
    return shapes


def _fmt(dims: list) -> str:
    return "[" + ",".join(str(d) if d is not None else "?" for d in dims) + "]"


def make_feeds(specs: list[InputSpec], shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic synthetic inputs: normal floats, small non-negative integers, False booleans."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = shapes[spec.name]
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif np.issubdtype(spec.dtype, np.integer):
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds
