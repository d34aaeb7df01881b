"""Percentile bootstrap confidence intervals: of any metric, of a mean of per-sample scores (accuracy, MAE, the
share of ages inside their interval) and of the gap between two groups.

Every interval resamples from one seeded stream (``numpy.random.default_rng(seed)``): the same seed gives the same
interval. The indices are drawn in chunks of at most ``_CHUNK_ELEMENTS`` (memory), which leaves the draws unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ._json import finite_number

__all__ = ["bootstrap_ci", "bootstrap_gap_ci", "bootstrap_mean_ci"]

# Upper bound on the elements of one chunk of bootstrap indices (~16 MB of int64).
_CHUNK_ELEMENTS = 2_000_000


def _bootstrap_index_chunks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Resampling indices, (chunk, n) at a time, from one seeded stream."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        c = min(per_chunk, n_boot - done)
        yield rng.integers(0, n, size=(c, n))
        done += c


def _percentile_interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    stats = stats[np.isfinite(stats)]
    if not stats.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_bootstrap_args(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise InvalidInputError(f"n_boot must be >= 1; got {n_boot}")
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must lie in (0, 1); got {alpha}")


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of any metric.

    Args:
        metric_fn: computes the metric on a resample, given the resampled indices
            (an int array of length ``n`` drawn with replacement from ``range(n)``).
        n: number of samples in the group.
        n_boot: number of resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: seed of the resampling; the same seed gives the same interval.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``n == 0`` or every resample's metric is undefined.
        Non-finite resample values are dropped before taking percentiles.

    Raises:
        InvalidInputError: if ``n_boot < 1`` or ``alpha`` is outside (0, 1).

    Example:
        >>> v = np.array([1.0, 0.0, 1.0, 1.0])
        >>> lo, hi = bootstrap_ci(lambda idx: v[idx].mean(), len(v), n_boot=200, seed=0)
    """
    _check_bootstrap_args(n_boot, alpha)
    if n <= 0:
        return float("nan"), float("nan")
    stats = np.concatenate([
        np.fromiter((metric_fn(row) for row in chunk), dtype=np.float64, count=len(chunk))
        for chunk in _bootstrap_index_chunks(n, n_boot, seed)
    ])
    return _percentile_interval(stats, alpha)


def bootstrap_mean_ci(
    values: npt.ArrayLike, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Fast percentile bootstrap CI of a mean of per-sample scores (accuracy, MAE).

    Uses the same resampling stream as :func:`bootstrap_ci`, so
    ``bootstrap_ci(lambda i: v[i].mean(), len(v), ...)`` gives the same interval.

    Args:
        values: per-sample scores (1 = correct / absolute error).
        n_boot: number of resamples.
        alpha: 1 - confidence level.
        seed: resampling seed.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for no values.

    Raises:
        InvalidInputError: if ``n_boot < 1`` or ``alpha`` is outside (0, 1).
    """
    _check_bootstrap_args(n_boot, alpha)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not v.size:
        return float("nan"), float("nan")
    return _percentile_interval(_bootstrap_means(v, n_boot, seed), alpha)


def _bootstrap_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The mean of each of ``n_boot`` resamples of ``v`` (non-empty)."""
    return np.concatenate([v[chunk].mean(axis=1) for chunk in _bootstrap_index_chunks(v.size, n_boot, seed)])


def bootstrap_gap_ci(best: np.ndarray, worst: np.ndarray, higher_is_better: bool, n_boot: int, alpha: float,
            seed: int) -> tuple[float | None, float | None]:
    """Percentile CI of the (signed, best-minus-worst oriented) gap between two groups' per-sample scores,
    resampling the two groups independently; bounds that are not finite are None.

    The point estimate of the gap is >= 0; an interval reaching 0 or below says the gap may be chance.
    """
    b = _bootstrap_means(best, n_boot, seed)
    w = _bootstrap_means(worst, n_boot, seed + 1)  # another stream: the groups are independent samples
    lo, hi = _percentile_interval(b - w if higher_is_better else w - b, alpha)
    return finite_number(lo), finite_number(hi)

