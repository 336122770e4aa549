"""Will a strategy save labels? Its learning curves against the baseline's, over seeds.

Two tests decide, and either may: the seed spreads (mean ± std over seeds) of the labels
needed or of the final value do not overlap, or, on the seeds both ran, the per-seed
differences are beyond chance (a paired t interval at 95 %). The strategies of one comparison
share each seed's first round, pool draws and test split, so the paired test removes what a
seed does to every strategy alike (an easy or a hard test split) and keeps what the strategy
does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .report import headline_metrics

# the paired interval's coverage: a difference counts when this interval excludes zero
LEVEL = 0.95


@dataclass(frozen=True)
class Verdict:
    """How one strategy compares with the baseline on one metric (see :func:`verdicts`).

    ``target`` is the baseline's mean at its final budget ``budget``; ``needed`` the labels each
    seed of the strategy took to reach it (interpolated on its learning curve; ``budget`` for a
    seed that never reached it, counted in ``reached``); ``baseline_needed`` the same for the
    baseline's own seeds; ``final`` and ``baseline_final`` the (mean, std) at the final budget.
    ``paired_seeds`` is the number of seeds both ran; ``paired_saving`` the (mean, half-width
    of the 95 % t interval) over those seeds of the labels the strategy saved on each (the
    baseline's labels needed less its own), ``paired_gain`` the same of its final value less
    the baseline's; the half-width is NaN with fewer than two such seeds. ``outcome`` is
    "fewer labels", "more labels" or "no clear difference".

    Examples
    --------
    >>> from activerm_fast.simulate import verdicts
    >>> points = [("random", 100, 0.4), ("random", 200, 0.6), ("xtx", 100, 0.6), ("xtx", 200, 0.7)]
    >>> records = [{"strategy": s, "seed": 0, "labels": n, "spearman": v} for s, n, v in points]
    >>> verdict = verdicts(records)[0]  # one seed: xtx reaches random's final 0.6 at 100 labels
    >>> verdict.strategy, verdict.outcome, verdict.budget, verdict.needed, verdict.baseline_needed
    ('xtx', 'fewer labels', 200, (100.0,), (200.0,))
    >>> verdict.paired_seeds, verdict.paired_saving  # one seed: no interval
    (1, (100.0, nan))
    """

    strategy: str
    metric: str
    budget: int
    target: float
    needed: tuple[float, ...]
    reached: int
    baseline_needed: tuple[float, ...]
    final: tuple[float, float]
    baseline_final: tuple[float, float]
    paired_seeds: int
    paired_saving: tuple[float, float]
    paired_gain: tuple[float, float]
    outcome: str

    @property
    def saving(self) -> tuple[float, float]:
        """(mean, std over seeds) of the labels saved: budget minus labels needed.

        Examples
        --------
        >>> from activerm_fast.simulate import verdicts
        >>> curve = {"random": [0.4, 0.6], "xtx": [0.5, 0.7]}  # at 100 and 200 labels, one seed
        >>> records = [
        ...     {"strategy": s, "seed": 0, "labels": 100 * (i + 1), "spearman": v}
        ...     for s, values in curve.items() for i, v in enumerate(values)
        ... ]
        >>> verdicts(records)[0].saving  # xtx reaches 0.6 half-way, at 150 labels
        (50.0, 0.0)
        """
        saved = self.budget - np.asarray(self.needed)
        return float(saved.mean()), float(saved.std())

    def line(self) -> str:
        """The plain-language verdict, as :func:`format_verdicts` prints it.

        Examples
        --------
        >>> from activerm_fast.simulate import verdicts
        >>> finals = {"random": 0.6, "bald": 0.4}  # two seeds each, all at 100 labels
        >>> records = [
        ...     {"strategy": s, "seed": seed, "labels": 100, "spearman": v}
        ...     for s, v in finals.items() for seed in (0, 1)
        ... ]
        >>> print(verdicts(records)[0].line())  # doctest: +NORMALIZE_WHITESPACE
        bald: MORE LABELS: reaches the baseline's final spearman (0.600 at 100 labels) with
        100 ± 0 labels (0 of 2 seeds within the budget), saving 0 (0%); ends at
        0.400 ± 0.000 against 0.600 ± 0.000; on the same 2 seeds: saves 0 ± 0 labels,
        ends -0.200 ± 0.000 above (95% intervals)
        """
        mean, std = self.saving
        final, spread = self.final
        base, base_spread = self.baseline_final
        seeds = len(self.needed)
        reach = (
            f"reaches the baseline's final {self.metric} ({self.target:.3f} at {self.budget} "
            f"labels) with {self.budget - mean:.0f} ± {std:.0f} labels ({self.reached} of "
            f"{seeds} seeds within the budget), saving {mean:.0f} ({100 * mean / self.budget:.0f}%)"
        )
        ends = f"ends at {final:.3f} ± {spread:.3f} against {base:.3f} ± {base_spread:.3f}"
        saved, saved_width = self.paired_saving
        gain, gain_width = self.paired_gain
        paired = (
            f"on the same {self.paired_seeds} seeds: saves {saved:.0f} ± {saved_width:.0f} "
            f"labels, ends {gain:.3f} ± {gain_width:.3f} above ({100 * LEVEL:.0f}% intervals)"
            if self.paired_seeds > 1
            else f"{self.paired_seeds} seed in common: no paired interval"
        )
        verdict = {"fewer labels": "FEWER LABELS", "more labels": "MORE LABELS"}
        label = verdict.get(self.outcome, self.outcome)
        return f"{self.strategy}: {label}: {reach}; {ends}; {paired}"


def verdicts(
    records: list[dict[str, Any]], metric: str | None = None, baseline: str = "random"
) -> list[Verdict]:
    """Each strategy of ``records`` against ``baseline``: will it save labels?

    The target is the baseline's mean ``metric`` (default: the first headline metric) at its
    final budget B. For every seed, the labels a strategy needs to reach the target are read
    off its learning curve by linear interpolation between budgets (B when it never does, so a
    seed is never credited beyond the budget); the baseline's own seeds are measured the same
    way, which shows how far seed noise alone moves that number.

    The strategy is *better* when either test says so: the seed spreads separate (its saving,
    B minus labels needed, less its std over seeds exceeds the baseline's own saving plus its
    std, or its final mean less its std exceeds the baseline's final mean plus its std, so
    that the baseline would need more than B labels to match it), or, on the seeds both ran,
    the 95 % paired t interval of the per-seed saving (the baseline's labels needed less the
    strategy's) or of the per-seed final difference lies above zero. It is *worse* when its
    final mean plus its std stays below the baseline's final mean less its std, or when one of
    the two paired intervals lies below zero. Outcome "fewer labels" when better and not
    worse, "more labels" when worse and not better, otherwise "no clear difference". The paired
    test needs two seeds in common; with one, only the spreads decide.

    Parameters
    ----------
    records : list of dict
        Round records of several strategies over the same seeds, as :func:`simulate` returns.
    metric : str, optional
        The metric compared; the first of :func:`headline_metrics` when None.
    baseline : str, default "random"
        The strategy compared with.

    Returns
    -------
    list of Verdict
        One per strategy other than the baseline, in the records' order.

    Raises
    ------
    ValueError
        If ``records`` is empty, holds no ``metric`` of the baseline, or a ``metric`` that is
        not a finite number.

    Examples
    --------
    >>> curves = {  # spearman at 100 and 200 labels, one pair per seed
    ...     "random": [(0.50, 0.60), (0.45, 0.62), (0.50, 0.58)],
    ...     "xtx": [(0.60, 0.70), (0.62, 0.72), (0.58, 0.68)],
    ...     # a seed's easy or hard test split moves both; bald ends a little higher on each
    ...     "bald": [(0.50, 0.62), (0.45, 0.63), (0.50, 0.60)],
    ... }
    >>> records = [
    ...     {"strategy": name, "seed": seed, "labels": labels, "spearman": value}
    ...     for name, runs in curves.items()
    ...     for seed, run in enumerate(runs)
    ...     for labels, value in zip((100, 200), run)
    ... ]
    >>> from activerm_fast.simulate import verdicts
    >>> [(v.strategy, v.outcome, v.target) for v in verdicts(records)]
    [('xtx', 'fewer labels', 0.6), ('bald', 'fewer labels', 0.6)]
    >>> bald = verdicts(records)[1]
    >>> bald.final[0] - bald.final[1] > bald.baseline_final[0] + bald.baseline_final[1]
    False
    >>> [round(x, 3) for x in bald.paired_gain]  # the paired test sees it: mean, half-width
    [0.017, 0.014]
    >>> [round(labels, 1) for labels in verdicts(records)[0].baseline_needed]  # seed noise
    [200.0, 188.2, 200.0]
    >>> verdicts(records, baseline="max-gap")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: records hold no 'spearman' of the baseline 'max-gap' (strategies: ...
    """
    if not records:
        raise ValueError("records is empty: run simulate first")
    metric = metric if metric is not None else (headline_metrics(records) or ["spearman"])[0]
    curves: dict[str, dict[int, dict[int, float]]] = {}
    for record in records:
        if metric in record:
            value = float(record[metric])
            if not math.isfinite(value):  # it would be taken as a seed spread of NaN
                raise ValueError(
                    f"records hold {metric}={value} for strategy {record['strategy']!r}, seed "
                    f"{record['seed']} at {record['labels']} labels; a verdict needs numbers"
                )
            by_seed = curves.setdefault(record["strategy"], {})
            by_seed.setdefault(record["seed"], {})[record["labels"]] = value
    if baseline not in curves:
        raise ValueError(
            f"records hold no {metric!r} of the baseline {baseline!r} (strategies: "
            f"{sorted(curves)}); run it beside the others"
        )
    base_runs = curves[baseline]
    budget = max(max(curve) for curve in base_runs.values())
    target = float(np.mean([curve[max(curve)] for curve in base_runs.values()]))
    base_reach = {seed: _labels_to_reach(run, target, budget) for seed, run in base_runs.items()}
    baseline_final = _final(base_runs)
    base_saving = budget - np.asarray([needed for needed, _ in base_reach.values()])
    result = []
    for strategy, runs in curves.items():
        if strategy == baseline:
            continue
        reach = {seed: _labels_to_reach(curve, target, budget) for seed, curve in runs.items()}
        needed = np.asarray([labels for labels, _ in reach.values()])
        saving = budget - needed
        final = _final(runs)
        shared = [seed for seed in runs if seed in base_runs]
        paired_saving = _paired_interval([base_reach[s][0] - reach[s][0] for s in shared])
        paired_gain = _paired_interval([_last(runs[s]) - _last(base_runs[s]) for s in shared])
        better = (
            saving.mean() - saving.std() > base_saving.mean() + base_saving.std()
            or final[0] - final[1] > baseline_final[0] + baseline_final[1]
            or any(mean - width > 0 for mean, width in (paired_saving, paired_gain))
        )
        worse = final[0] + final[1] < baseline_final[0] - baseline_final[1] or any(
            mean + width < 0 for mean, width in (paired_saving, paired_gain)
        )
        if better and not worse:
            outcome = "fewer labels"
        elif worse and not better:
            outcome = "more labels"
        else:
            outcome = "no clear difference"
        result.append(
            Verdict(
                strategy=strategy,
                metric=metric,
                budget=budget,
                target=target,
                needed=tuple(float(x) for x in needed),
                reached=sum(hit for _, hit in reach.values()),
                baseline_needed=tuple(float(x) for x, _ in base_reach.values()),
                final=final,
                baseline_final=baseline_final,
                paired_seeds=len(shared),
                paired_saving=paired_saving,
                paired_gain=paired_gain,
                outcome=outcome,
            )
        )
    return result


def format_verdicts(records: list[dict[str, Any]], baseline: str = "random") -> str:
    """The verdict lines of :func:`verdicts`, after a line on the baseline's own seed noise.

    Parameters
    ----------
    records : list of dict
        Round records, as :func:`simulate` returns them.
    baseline : str, default "random"
        The strategy compared with.

    Returns
    -------
    str
        The lines, or one saying there is nothing to compare when only the baseline ran.

    Raises
    ------
    ValueError
        If ``records`` is empty or holds no run of the baseline (see :func:`verdicts`).

    Examples
    --------
    >>> from activerm_fast.simulate import format_verdicts
    >>> records = [  # seed k scores labels / slope + k / 50; xtx has the steeper curve
    ...     {"strategy": s, "seed": k, "labels": n, "spearman": n / slope + k / 50}
    ...     for s, slope in [("random", 400), ("xtx", 250)] for k in range(3) for n in (100, 200)
    ... ]
    >>> print(format_verdicts(records))  # doctest: +NORMALIZE_WHITESPACE
    Will a strategy save labels? Target: random's final spearman (0.520 at 200 labels);
    random's own seeds reach it with 197 ± 4 labels (± is the std over seeds)
    xtx: FEWER LABELS: reaches the baseline's final spearman (0.520 at 200 labels) with
    125 ± 4 labels (3 of 3 seeds within the budget), saving 75 (38%); ends at
    0.820 ± 0.016 against 0.520 ± 0.016; on the same 3 seeds: saves 72 ± 6 labels,
    ends 0.300 ± 0.000 above (95% intervals)
    >>> format_verdicts([r for r in records if r["strategy"] == "random"])
    "only 'random' ran: nothing to compare with it"
    """
    found = verdicts(records, baseline=baseline)
    if not found:
        return f"only {baseline!r} ran: nothing to compare with it"
    first = found[0]
    noise = np.asarray(first.baseline_needed)
    head = (
        f"Will a strategy save labels? Target: {baseline}'s final {first.metric} "
        f"({first.target:.3f} at {first.budget} labels); {baseline}'s own seeds reach it with "
        f"{noise.mean():.0f} ± {noise.std():.0f} labels (± is the std over seeds)"
    )
    return "\n".join([head, *(verdict.line() for verdict in found)])


def student_t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t distribution with ``df`` degrees of freedom.

    From the closed form of P(|T| <= t) for integer ``df`` (Abramowitz & Stegun 26.7.3-4),
    inverted by bisection to float64 precision: the paired intervals need no SciPy.

    Parameters
    ----------
    probability : float
        In (0.5, 1).
    df : int
        Degrees of freedom, >= 1.

    Returns
    -------
    float
        t with P(T <= t) = ``probability``.

    Raises
    ------
    ValueError
        If ``probability`` is not in (0.5, 1) or ``df`` is not an integer >= 1.

    Examples
    --------
    >>> from activerm_fast.simulation.verdicts import student_t_quantile
    >>> round(student_t_quantile(0.975, 1), 3), round(student_t_quantile(0.975, 4), 3)
    (12.706, 2.776)
    >>> student_t_quantile(0.975, 0)
    Traceback (most recent call last):
    ...
    ValueError: df must be an integer >= 1, got 0
    """
    if not (isinstance(probability, float | int) and 0.5 < probability < 1):
        raise ValueError(f"probability must be in (0.5, 1), got {probability!r}")
    if isinstance(df, bool) or not isinstance(df, int | np.integer) or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}")
    central = 2 * probability - 1  # P(|T| <= t)
    low, high = 0.0, 1.0
    while _central_t(high, int(df)) < central:
        low, high = high, 2 * high
    while high - low > 1e-15 * high:
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        low, high = (middle, high) if _central_t(middle, int(df)) < central else (low, middle)
    return 0.5 * (low + high)


def _central_t(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) (1 + 1/2 cos^2 + 1.3/(2.4) cos^4 + ... up to cos^(df-2))
        term = total = 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * cos2
            total += term
        return math.sin(theta) * total
    # odd: 2/pi (theta + sin(theta) (cos + 2/3 cos^3 + ... up to cos^(df-2)))
    total = 0.0
    if df > 1:
        term = total = math.cos(theta)
        for k in range(1, (df - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * cos2
            total += term
    return 2 / math.pi * (theta + math.sin(theta) * total)


def _paired_interval(differences: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t interval) of per-seed differences; NaN width under two."""
    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan
    spread = float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, student_t_quantile(0.5 + LEVEL / 2, values.size - 1) * spread


def _labels_to_reach(curve: dict[int, float], target: float, budget: int) -> tuple[float, bool]:
    """Labels at which a learning curve first reaches ``target`` (linear between budgets), and
    whether it does; ``budget`` when it does not."""
    points = sorted(curve.items())
    for index, (labels, value) in enumerate(points):
        if value >= target:
            if index == 0:
                return float(labels), True
            before, previous = points[index - 1]
            fraction = (target - previous) / (value - previous)
            return before + fraction * (labels - before), True
    return float(budget), False


def _last(curve: dict[int, float]) -> float:
    """A learning curve's value at its largest budget."""
    return curve[max(curve)]


def _final(runs: dict[int, dict[int, float]]) -> tuple[float, float]:
    """(mean, std over seeds) of each seed's value at its largest budget."""
    finals = [_last(curve) for curve in runs.values()]
    return float(np.mean(finals)), float(np.std(finals))
