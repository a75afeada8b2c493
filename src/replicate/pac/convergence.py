"""When has a learning curve flattened? The one rule behind the length of the SAC experts' training (notebook 30,
:mod:`replicate.pac.experts`) and the number of updates of every method in notebook 31 (our rule, pre-registered).

A curve is a sequence of evaluations ``values`` at increasing ``steps`` (agent steps, or updates). It is *flat at
point i* when the mean of its last ``window`` evaluations, ``values[i-window+1 .. i]``, exceeds the mean of the
``window`` evaluations before them by less than ``tol`` (in the curve's units: return points for the experts,
normalised return for notebook 31), and ``steps[i] >= min_step``. Averaging whole windows keeps a single noisy
evaluation from stopping or prolonging training; ``min_step`` keeps a slow start from reading as a plateau. The
first such point is where the curve flattens: :func:`plateau_index`; :func:`updates_at_plateau` turns it into the
update count a run uses (or the cap, with ``flat=False``, when the curve never flattened).

The rule is ours (no paper prescribes one); its window, tolerance and minimum are parameters the notebooks state.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from replicate.params import ParameterError


def check_rule(window: int, tol: float) -> None:
    """Boundary check of the rule's settings (``window`` >= 1 evaluations, ``tol`` > 0)."""
    if int(window) < 1:
        raise ParameterError(f"plateau window={window} must be >= 1 evaluation")
    if not float(tol) > 0:
        raise ParameterError(f"plateau tol={tol} must be > 0 (in the curve's units)")


def window_gain(values: Sequence[float], i: int, window: int) -> float:
    """Mean of ``values[i-window+1 .. i]`` minus the mean of the ``window`` values before them (NaN when the curve has
    fewer than ``2 * window`` points up to ``i``)."""
    v = np.asarray(values, np.float64)
    if i + 1 < 2 * window:
        return float("nan")
    last = v[i - window + 1 : i + 1]
    before = v[i - 2 * window + 1 : i - window + 1]
    return float(last.mean() - before.mean())


def plateau_index(steps: Sequence[float], values: Sequence[float], window: int, tol: float,
                  min_step: float = 0) -> int | None:
    """Index of the first evaluation at which the curve is flat (:func:`window_gain` ``< tol`` and
    ``steps[i] >= min_step``), or None if it never is."""
    check_rule(window, tol)
    s, v = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    if s.shape != v.shape or s.ndim != 1:
        raise ValueError(f"steps {s.shape} and values {v.shape} must be 1-D and of equal length")
    for i in range(2 * window - 1, len(v)):
        if s[i] >= min_step and window_gain(v, i, window) < tol:
            return i
    return None


def updates_at_plateau(steps: Sequence[int], values: Sequence[float], window: int, tol: float,
                       min_step: float = 0) -> tuple[int, bool]:
    """``(steps[i], True)`` at the first flat point ``i`` (:func:`plateau_index`); ``(steps[-1], False)`` when the
    curve never flattened (the run stops at its cap, and the caller reports that it did not converge)."""
    i = plateau_index(steps, values, window, tol, min_step)
    if i is None:
        return int(steps[-1]), False
    return int(steps[i]), True


def curve_values(points: Sequence[tuple[int, dict]]) -> tuple[list[int], list[float]]:
    """Steps and mean normalised return over tasks of an evaluation curve ``[(updates, {task: {"normalised": ..}})]``
    (:func:`replicate.pac.train.train_in_chunks`' evaluations)."""
    return ([int(n) for n, _ in points],
            [float(np.mean([r["normalised"] for r in ev.values()])) for _, ev in points])


def curve_is_flat(points: Sequence[tuple[int, dict]], window: int, tol: float, min_step: float = 0) -> bool:
    """Has this evaluation curve flattened at its last point or before (:func:`plateau_index` on
    :func:`curve_values`)? The ``stop`` rule of notebook 31's convergence runs (bind the settings with
    ``functools.partial``)."""
    steps, values = curve_values(points)
    return bool(steps) and plateau_index(steps, values, window, tol, min_step) is not None
