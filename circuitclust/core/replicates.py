"""Aggregating a result over replicate runs (one per seed): the mean and a 95% interval across seeds of every
number, generic over what the numbers are (clusterability per graph, layer distances, effects, ...).

The interval is the Student t interval of the mean, ``mean +- t_(0.975, n-1) * sd / sqrt(n)`` over the ``n``
seeds (with 3 seeds ``t = 4.30``: wide, as three replicates warrant); a bootstrap over three values would be
meaningless. Each summary carries the per-seed values, so any other reading stays possible.

- :func:`summarise`: one number over seeds ``-> {"mean", "sd", "n", "lo", "hi", "min", "max", "values"}``.
- :func:`aggregate`: a list of per-seed records (dicts, possibly nested, lists of numbers included) ->
  the same structure with every number replaced by its :func:`summarise` (strings and other values that agree
  across seeds are kept, differing ones listed).
- :func:`aggregate_rows`: per-seed lists of rows keyed by a field (e.g. one row per graph) -> one aggregated
  row per key, in the first seed's order.
- :func:`interval_info`: how the intervals were made, stored beside them.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

LEVEL = 0.95
METHOD = "Student t interval of the mean across seeds"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def t_quantile(level: float, df: int) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def summarise(values: Sequence[float | None], level: float = LEVEL) -> dict[str, Any]:
    """Mean, sample sd and ``level`` t interval of ``values`` (one per seed). None and NaN entries are left out
    of ``n`` (they stay in ``values``); with ``n < 2`` the sd and the interval are None."""
    vals = [float(v) for v in values if v is not None and _number(v) and not math.isnan(v)]
    n = len(vals)
    out: dict[str, Any] = {"mean": None, "sd": None, "n": n, "lo": None, "hi": None, "min": None, "max": None,
                           "values": [None if v is None or (_number(v) and math.isnan(v)) else float(v)
                                      for v in values]}
    if n == 0:
        return out
    mean = sum(vals) / n
    out.update(mean=mean, min=min(vals), max=max(vals))
    if n >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        half = t_quantile(level, n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, lo=mean - half, hi=mean + half)
    return out


def aggregate(records: Sequence[Any], level: float = LEVEL) -> Any:
    """``records`` (one per seed, same structure) with every number replaced by its :func:`summarise` over the
    seeds. Dicts are walked key by key (keys missing in some seeds count as None there), lists of equal length
    element by element unless every seed has the same list (kept as it is); other values are kept when every
    seed agrees, else listed as ``{"values": [...]}``."""
    first = next((r for r in records if r is not None), None)
    if first is None:
        return None
    if isinstance(first, Mapping):
        keys = list(dict.fromkeys(k for r in records if isinstance(r, Mapping) for k in r))
        return {k: aggregate([r.get(k) if isinstance(r, Mapping) else None for r in records], level) for k in keys}
    if isinstance(first, (list, tuple)) and all(isinstance(r, (list, tuple)) and len(r) == len(first)
                                                for r in records):
        if all(list(r) == list(first) for r in records):
            return list(first)  # a list every seed agrees on (a shape, a layer list) stays as it is
        return [aggregate([r[i] for r in records], level) for i in range(len(first))]
    if all(_number(r) or r is None for r in records) and any(_number(r) for r in records):
        return summarise(records, level)
    if all(r == first for r in records):
        return first
    return {"values": list(records)}


def aggregate_rows(per_seed: Sequence[Sequence[Mapping[str, Any]]], key: str, level: float = LEVEL
                   ) -> list[dict[str, Any]]:
    """Rows (dicts) of each seed matched by ``row[key]`` and aggregated with :func:`aggregate`; one row per key,
    in the order of the first seed's rows (keys only some seeds have are appended after)."""
    keys = list(dict.fromkeys(r[key] for rows in per_seed for r in rows))
    by_seed = [{r[key]: r for r in rows} for rows in per_seed]
    return [{key: k, **{f: v for f, v in aggregate([rows.get(k) for rows in by_seed], level).items() if f != key}}
            for k in keys]


def interval_info(seeds: Sequence[int], level: float = LEVEL) -> dict[str, Any]:
    """How the across-seed intervals were made: ``{"level", "method", "seeds", "n"}`` plus a note when fewer
    than 2 seeds leave no interval."""
    out = {"level": level, "method": METHOD, "seeds": [int(s) for s in seeds], "n": len(seeds)}
    if len(seeds) < 2:
        out["note"] = "one seed: no interval across seeds"
    return out


__all__ = ["LEVEL", "METHOD", "summarise", "aggregate", "aggregate_rows", "interval_info", "t_quantile"]
