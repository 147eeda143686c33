"""The statistics behind every verdict rdml prints: t-intervals over seeds, paired comparisons over
matched seeds (same seed = same initialisation and batch order), and Holm's step-down adjustment when
one claim is tested at several α. scipy does the distributions; nothing here knows a table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

__all__ = ["LEVEL", "t_interval", "Paired", "paired", "holm", "verdict"]

LEVEL = 0.95  # confidence level of every interval, and 1 − the significance level of every test


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Two-sided t-interval of the mean: x̄ ± t_{(1+level)/2, n−1} · s/√n (None below two values)."""
    n = len(values)
    if n < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = stats.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class Paired:
    """better − worse over matched seeds: mean difference, its t-interval, the paired t-test's two-sided p."""

    n: int
    mean: float | None
    interval: tuple[float, float] | None
    p: float | None


def paired(better: dict, worse: dict) -> Paired:
    """Paired comparison of two {seed: value} maps on the seeds they share (Student's paired t-test,
    scipy.stats.ttest_rel). Identical differences give p = 0 when they are not all 0, else p = 1."""
    seeds = sorted(set(better) & set(worse))
    diffs = [better[s] - worse[s] for s in seeds]
    if not diffs:
        return Paired(0, None, None, None)
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Paired(1, mean, None, None)
    if statistics.pstdev(diffs) == 0:  # scipy returns NaN for a zero-variance difference
        return Paired(len(diffs), mean, (mean, mean), 1.0 if mean == 0 else 0.0)
    p = float(stats.ttest_rel([better[s] for s in seeds], [worse[s] for s in seeds]).pvalue)
    return Paired(len(diffs), mean, t_interval(diffs), p)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error ≤ the level); None stays None."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m, adjusted, running = len(indexed), [None] * len(p_values), 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(result: Paired, adjusted_p: float | None, level: float = LEVEL, sign: int = 1) -> str:
    """supported: the difference is significant in the paper's direction (better − worse > 0, or < 0 for
    a metric where lower is better: sign −1); contradicted: significant the other way; not significant;
    or too few seeds to test."""
    if adjusted_p is None:
        return "too few seeds"
    if adjusted_p < 1 - level:
        return "supported" if sign * result.mean > 0 else "contradicted"
    return "not significant"
