"""JSON-safe values: :func:`finite_number` for one number, :func:`jsonable` for a whole report.

Both turn what strict JSON cannot hold (NaN, infinities, numpy scalars and arrays) into plain Python. They sit on
the computation side because the reports are JSON-ready as computed (undefined metrics are None); the report
package writes its files through them (:func:`facemtl.report._format.json_text`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["finite_number", "jsonable"]


def finite_number(x: Any) -> float | None:
    """``x`` as a float when it is a finite number (not a bool), else None."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def jsonable(x: Any, fallback: Callable[[Any], Any] | None = None) -> Any:
    """``x`` with numpy scalars and arrays as Python values, non-finite floats as None, mappings as dicts with
    string keys and tuples as lists, recursively (strict JSON).

    Args:
        x: any tree of mappings, lists and values.
        fallback: applied to any other object (``str`` when writing a file); None: left as it is.
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, fallback) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, fallback) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, str):
        return x
    if hasattr(x, "tolist"):  # numpy arrays and other scalars (and anything else array-like)
        return jsonable(x.tolist(), fallback)
    return x if fallback is None else fallback(x)
