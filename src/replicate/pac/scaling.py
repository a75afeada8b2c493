"""Scaling-law fits for the PAC isoFLOP sweep, following Hoffmann et al. 2022 ("Chinchilla"): our procedure.

The paper says offline actor-critic "follows similar scaling laws as supervised learning" (abstract); its
fitting procedure, section and exponents could not be read here, so the choices below are ours (Chinchilla's
approaches 2 and 3), not verified as the paper's.

* **isoFLOP profiles** (Chinchilla approach 2): for each compute budget ``C`` train several model
  sizes ``N`` for ``D = C / (k N)`` samples; fit a parabola to loss vs ``log N``; its minimum is
  ``N_opt(C)``; then fit ``N_opt ∝ C^a`` (and ``D_opt ∝ C^b``, ``b ≈ 1 - a``).
* **Parametric fit** (approach 3): ``L(N, D) = E + A / N^alpha + B / D^beta`` by robust (Huber)
  least squares in log-parameter space; it implies ``N_opt ∝ C^(beta / (alpha + beta))``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def isoflop_optimum(n_params: Sequence[float], losses: Sequence[float], window: int = 5) -> float:
    """``N_opt`` of one isoFLOP profile: vertex of a parabola in ``log10 N`` fitted to the ``window``
    points around the best one (a wide parabola is biased, the known weakness of approach 2);
    fallback: the best point."""
    order = np.argsort(np.asarray(n_params, float))
    x = np.log10(np.asarray(n_params, float))[order]
    y = np.asarray(losses, float)[order]
    if len(x) > window:
        lo = int(np.clip(np.argmin(y) - window // 2, 0, len(x) - window))
        x, y = x[lo : lo + window], y[lo : lo + window]
    if len(x) < 3:
        return float(10 ** x[np.argmin(y)])
    c2, c1, _ = np.polyfit(x, y, 2)
    if c2 <= 0:  # no interior minimum: the optimum lies at the edge of the grid
        return float(10 ** x[np.argmin(y)])
    vertex = -c1 / (2 * c2)
    return float(10 ** np.clip(vertex, x.min(), x.max()))


def isoflop_parabola(n_params: Sequence[float], losses: Sequence[float]) -> np.ndarray | None:
    """Coefficients ``(c2, c1, c0)`` of the parabola in ``log10 N`` fitted to a whole isoFLOP profile (for drawing it
    and for :func:`profile_optimum`), or None with fewer than 3 points."""
    x, y = np.log10(np.asarray(n_params, float)), np.asarray(losses, float)
    if len(x) < 3:
        return None
    return np.polyfit(x, y, 2)


def profile_optimum(n_params: Sequence[float], losses: Sequence[float]) -> tuple[float, bool]:
    """``(N_opt, interior)`` of one isoFLOP profile: ``interior`` when its lowest loss is neither at the smallest nor
    at the largest size (then ``N_opt`` is the vertex of :func:`isoflop_parabola`, kept inside the grid); at the grid
    edge ``N_opt`` is that edge's size, which only bounds the true optimum (needs >= 3 sizes to be interior)."""
    n = np.asarray(n_params, float)
    y = np.asarray(losses, float)
    order = np.argsort(n)
    n, y = n[order], y[order]
    best = int(np.argmin(y))
    if len(n) < 3 or best in (0, len(n) - 1):
        return float(n[best]), False
    c2, c1, _ = isoflop_parabola(n, y)
    if c2 <= 0:
        return float(n[best]), True
    vertex = float(np.clip(-c1 / (2 * c2), np.log10(n[0]), np.log10(n[-1])))
    return float(10**vertex), True


def optima_table(res, loss: str, by: Sequence[str] = ("method", "seed")):
    """Per ``by`` group and budget: ``n_opt``, ``interior`` (:func:`profile_optimum`) and ``sizes`` (points in the
    profile). ``res`` has one row per run with ``budget``, ``N`` and the ``loss`` column (untrained points already
    dropped; no rows give an empty table with these columns)."""
    import pandas as pd

    rows = []
    for keys, g in res.groupby([*by, "budget"], sort=True):
        n_opt, interior = profile_optimum(g.N, g[loss])
        rows.append({**dict(zip([*by, "budget"], keys)), "n_opt": n_opt, "interior": interior, "sizes": len(g)})
    out = pd.DataFrame(rows, columns=[*by, "budget", "n_opt", "interior", "sizes"])
    return out.astype({"budget": float, "n_opt": float, "interior": bool, "sizes": int})


def exponents(optima, by: Sequence[str] = ("method", "seed")):
    """Per ``by`` group of :func:`optima_table`: ``a`` of ``N_opt ~ C^a`` fitted to the interior optima only (NaN with
    fewer than two budgets inside the grid) and ``interior`` (how many budgets were)."""
    import pandas as pd

    rows = []
    for keys, g in optima.groupby(list(by), sort=True):
        inside = g[g.interior]
        a = power_law_exponent(inside.budget, inside.n_opt)[0] if inside.budget.nunique() >= 2 else float("nan")
        rows.append({**dict(zip(by, keys if isinstance(keys, tuple) else (keys,))), "a": a,
                     "interior": int(g.interior.sum())})
    return pd.DataFrame(rows, columns=[*by, "a", "interior"]).astype({"a": float, "interior": int})


def power_law_exponent(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = c x^a`` in log space; returns ``(a, c)``. Needs >= 2 distinct ``x``."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(np.unique(lx)) < 2:
        raise ValueError("need at least two distinct x values to fit a power law")
    a, logc = np.polyfit(lx, ly, 1)
    return float(a), float(np.exp(logc))


def fit_chinchilla(n: Sequence[float], d: Sequence[float], loss: Sequence[float]) -> dict[str, float] | None:
    """Fit ``L = E + A N^-alpha + B D^-beta`` (Huber loss on log L, delta 1e-3, several starts).

    Returns ``{E, A, B, alpha, beta, a_opt}`` with ``a_opt = beta / (alpha + beta)`` (``N_opt ∝ C^a_opt``),
    or ``None`` with fewer than 6 points (5 parameters).
    """
    from scipy.optimize import least_squares

    n, d, y = (np.asarray(v, float) for v in (n, d, loss))
    if len(y) < 6:
        return None

    def resid(p):
        e, a, b, al, be = p
        pred = np.logaddexp.reduce(np.stack([np.full_like(n, e), a - al * np.log(n), b - be * np.log(d)]), axis=0)
        return pred - np.log(y)

    best = None
    for al0 in (0.2, 0.5, 1.0):
        for be0 in (0.2, 0.5, 1.0):
            p0 = np.array([np.log(max(y.min() * 0.5, 1e-6)), 1.0, 1.0, al0, be0])
            bounds = ([-20, -20, -20, 0.0, 0.0], [20, 40, 40, 3.0, 3.0])
            r = least_squares(resid, p0, loss="huber", f_scale=1e-3, bounds=bounds)
            if best is None or r.cost < best.cost:
                best = r
    e, a, b, al, be = best.x
    a_opt = be / (al + be) if al + be > 0 else float("nan")
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": float(al), "beta": float(be),
            "a_opt": float(a_opt)}


def steps_for_budget(budget: float, train_flops_per_sample: float, batch_size: int, chunk: int) -> int:
    """Updates of ``batch_size`` samples that spend ``budget`` training FLOPs, rounded to a multiple of
    ``chunk`` (at least one chunk)."""
    return max(chunk, int(round(budget / (train_flops_per_sample * batch_size) / chunk)) * chunk)


def isoflop_fits(res, targets: Mapping[str, str]) -> dict[str, dict]:
    """For each ``{label: loss column}`` of ``targets``, fit the isoFLOP sweep ``res`` (a DataFrame with one row
    per run: ``method``, ``budget``, ``N`` (parameters), ``samples`` and the loss columns).

    A label's method is its first word (``"PAC (critic)"`` -> ``"PAC"``). Returns per label ``n_opt`` (the
    :func:`isoflop_optimum` of each budget, budgets ascending), ``a`` (exponent of ``N_opt ∝ C^a``; only with
    >= 2 budgets and >= 2 distinct optima) and ``chinchilla`` (:func:`fit_chinchilla`, or ``None``).
    """
    fits = {}
    for label, col in targets.items():
        sub = res[res.method == label.split()[0]]
        n_opt = [isoflop_optimum(g.N, g[col]) for _, g in sub.groupby("budget")]
        budgets = sorted(sub.budget.unique())
        fit: dict = {"n_opt": n_opt}
        if len(budgets) >= 2 and len(set(np.round(np.log10(n_opt), 6))) >= 2:
            fit["a"], _ = power_law_exponent(budgets, n_opt)
        fit["chinchilla"] = fit_chinchilla(sub.N, sub.samples, sub[col])
        fits[label] = fit
    return fits
