"""Representational collapse measured: how far apart the last-token representations of two sequences are.

Theorem 4.2 of "Transformers need glasses!" (Barbero et al. 2024) says the last-token representations
of [v, v_a] and [v, v_a, v_a] converge as the length grows; Figs 1a, 5, 8, 10 and 12 plot their
difference against n. This module holds the measures and the summaries the notebooks draw:

* :func:`representation_difference` (L1, L2, L∞, bit-identity of two vectors), :func:`difference_norms`
  and :func:`rounding_error` (vectorised, for the synthetic models of notebook 20);
* :class:`PairDifference` / :func:`pair_difference`: the probe on Gemma 3 (notebook 21, Fig. 5/12),
  :func:`gemma_pair_sweep` over constructions, lengths and dtypes (:func:`resumable_pair_sweep`: the same, one
  resumable unit of work per dtype and construction), :func:`length_curve` (the plotted
  line and band per length), :func:`plot_length_curves`, :func:`precision_table` (can bf16 resolve
  the pair?) and :func:`holds_from_n`;
* :func:`plot_precision`: the bf16 precision figure of notebook 21.

Notebook 21's verdict rules are :mod:`replicate.glasses.curves`' rules against the paper's plots.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from replicate import plotting, resumable, rng
from replicate.glasses import tasks

# ----------------------------------------------------------------------------- difference measures


def representation_difference(a, b) -> dict[str, float]:
    """L1, L2, L∞ distance between two representations (computed in float32), and bit-identity."""
    d = np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)
    return {
        "l1": float(np.abs(d).sum()),
        "l2": float(np.sqrt((d.astype(np.float64) ** 2).sum())),
        "linf": float(np.abs(d).max()),
        "identical": bool(np.array_equal(np.asarray(a), np.asarray(b))),
    }


NORM_INDEX = {"l1": 0, "l2": 1, "linf": 2}  # last axis of difference_norms


def difference_norms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L1, L2 and L∞ norms of ``a - b`` over the last axis, float64: shape ``a.shape[:-1] + (3,)``
    (order :data:`NORM_INDEX`)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.stack([np.abs(d).sum(-1), np.sqrt((d**2).sum(-1)), np.abs(d).max(-1)], -1)


def rounding_error(a: np.ndarray, b: np.ndarray, a_low: np.ndarray, b_low: np.ndarray) -> np.ndarray:
    """Rounding error of a low-precision run of a pair: max(‖a_low − a‖∞, ‖b_low − b‖∞) over the last axis."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a_low, b_low = np.asarray(a_low, np.float64), np.asarray(b_low, np.float64)
    return np.maximum(np.abs(a_low - a).max(-1), np.abs(b_low - b).max(-1))


# ----------------------------------------------------------------------------- Gemma probe (Fig. 5, 12)


@dataclasses.dataclass(frozen=True)
class PairDifference:
    """How different the final representations of the last tokens of two prompts are.

    ``y_a``/``y_b`` are the final RMS-normed representations (width,) of each prompt's last token
    (the paper's y_n = norm_3(v_n^(L)), what the output head reads). Per-channel |y_a - y_b| gives
    ``mean_abs`` (the plotted line), ``min_abs``/``max_abs`` (the band; max_abs is the inf-norm).
    """

    tokens_a: int
    tokens_b: int
    mean_abs: float
    min_abs: float
    max_abs: float
    rel_l2: float  # ||y_a - y_b||_2 / ||y_a||_2
    identical: bool  # bit-identical y_a == y_b (in the model's dtype)
    identical_fraction: float  # share of channels whose values are bit-identical (in the model's dtype)
    argmax_a: int
    argmax_b: int
    shared_forward: bool  # b extends a by tokens, so one causal forward of b gave both
    y_a: np.ndarray = dataclasses.field(repr=False, compare=False)  # float32 copies of the two representations
    y_b: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def same_argmax(self) -> bool:
        return self.argmax_a == self.argmax_b


def pair_difference(model, prompt_a: str, prompt_b: str) -> PairDifference:
    """Compare the last-token final representations of two prompts (e.g. n ones vs n+1 ones).

    When ``prompt_b``'s tokens extend ``prompt_a``'s (the paper's construction: the last token
    repeated), one causal forward of b gives both (position len(a)-1 sees exactly prompt a, and the
    masked padding contributes exact zeros), so both come from the same compiled computation.
    Otherwise (e.g. the comma variant, whose commas shift) two forwards are run.
    """
    ids_a, ids_b = model.tokenize(prompt_a), model.tokenize(prompt_b)
    head = model.params["embed"]
    if len(ids_b) > len(ids_a) and ids_b[: len(ids_a)] == ids_a:
        y = model.forward(ids_b, attentions=False, all_logits=False).hidden_states[-1]
        y_a, y_b, shared = y[len(ids_a) - 1], y[-1], True
    else:
        y_a = model.forward(ids_a, attentions=False, all_logits=False).hidden_states[-1, -1]
        y_b = model.forward(ids_b, attentions=False, all_logits=False).hidden_states[-1, -1]
        shared = False
    la = np.asarray((y_a @ head.T).astype(jnp.float32))
    lb = np.asarray((y_b @ head.T).astype(jnp.float32))
    same = np.asarray(y_a) == np.asarray(y_b)
    identical = bool(same.all())
    a = np.asarray(y_a.astype(jnp.float32), dtype=np.float64)
    b = np.asarray(y_b.astype(jnp.float32), dtype=np.float64)
    d = np.abs(a - b)
    return PairDifference(
        tokens_a=len(ids_a),
        tokens_b=len(ids_b),
        mean_abs=float(d.mean()),
        min_abs=float(d.min()),
        max_abs=float(d.max()),
        rel_l2=float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
        identical=identical,
        identical_fraction=float(same.mean()),
        argmax_a=int(la.argmax()),
        argmax_b=int(lb.argmax()),
        shared_forward=shared,
        y_a=a.astype(np.float32),
        y_b=b.astype(np.float32),
    )


def gemma_pair_sweep(
    models: Mapping[str, object], kinds: Sequence[str], lengths: Sequence[int], digit_seeds: int = 1
) -> pd.DataFrame:
    """:func:`pair_difference` for every model (keyed by dtype), construction and length: one row each.

    The prompts are :func:`replicate.glasses.tasks.collapse_prompt_pair`; ``count_digits`` runs
    ``digit_seeds`` random digit strings (generator ``rng.numpy_rng(seed, n)``), the others once.
    Columns: dtype, kind, n, seed, tokens (of the longer prompt), mean, min, max, rel_l2, identical,
    identical_fraction, same_argmax, argmax_a, argmax_b, y_a, y_b.
    """
    rows = []
    for dtype, model in models.items():
        for kind in kinds:
            for n in lengths:
                for seed in range(digit_seeds if kind == "count_digits" else 1):
                    a, b = tasks.collapse_prompt_pair(kind, n, rng.numpy_rng(seed, n))
                    d = pair_difference(model, a, b)
                    rows.append(
                        {
                            "dtype": dtype,
                            "kind": kind,
                            "n": n,
                            "seed": seed,
                            "tokens": d.tokens_b,
                            "mean": d.mean_abs,
                            "min": d.min_abs,
                            "max": d.max_abs,
                            "rel_l2": d.rel_l2,
                            "identical": d.identical,
                            "identical_fraction": d.identical_fraction,
                            "same_argmax": d.same_argmax,
                            "argmax_a": d.argmax_a,
                            "argmax_b": d.argmax_b,
                            "y_a": d.y_a,
                            "y_b": d.y_b,
                        }
                    )
    return pd.DataFrame(rows)


def resumable_pair_sweep(
    units: resumable.Units, models: Mapping[str, object], kinds: Sequence[str], lengths: Sequence[int],
    digit_seeds: int = 1,
) -> pd.DataFrame:
    """:func:`gemma_pair_sweep` with one unit of work per (dtype, construction) kept by ``units``
    (:class:`replicate.resumable.Units`): an interrupted run recomputes only the unfinished units. Same rows, in
    the same order, as :func:`gemma_pair_sweep`."""
    parts = []
    for dtype, model in models.items():
        for kind in kinds:
            inputs = {"dtype": dtype, "kind": kind, "lengths": [int(n) for n in lengths], "digit_seeds": digit_seeds}
            sweep = functools.partial(gemma_pair_sweep, {dtype: model}, [kind], lengths, digit_seeds)
            parts.append(units.run(f"pairs-{dtype}-{kind}", inputs, sweep))
    return pd.concat(parts, ignore_index=True)


def length_curve(df: pd.DataFrame, kind: str, dtype: str) -> pd.DataFrame:
    """Per length: mean over seeds of the channel mean, min over seeds of the channel min, max of the max
    (and mean rel_l2, all-identical, mean identical share, all-same-argmax, tokens), indexed by n."""
    sub = df[(df.kind == kind) & (df.dtype == dtype)]
    return sub.groupby("n").agg(
        mean=("mean", "mean"),
        min=("min", "min"),
        max=("max", "max"),
        rel_l2=("rel_l2", "mean"),
        identical=("identical", "all"),
        identical_fraction=("identical_fraction", "mean"),
        same_argmax=("same_argmax", "all"),
        tokens=("tokens", "max"),
    )


def plot_length_curves(
    ax, df: pd.DataFrame, kind: str, lengths: Sequence[int], title: str, paper: Mapping[int, float] | None = None
) -> None:
    """Fig. 5/12 panel on categorical length ticks (as the paper's): float32's mean channel difference with its
    min-max band over channels; bfloat16's mean as a dashed line (no band: its min is often an exact 0, which a log
    axis cannot show) and, dotted, bf16's own rounding error of y (below it bf16 cannot resolve the pair); the
    paper's values read off its plot; the 2⁻⁷ line. A float32 channel minimum of exactly 0 leaves a gap in the band
    rather than being clipped. The y-range covers everything drawn. Put one legend on the figure
    (``fig.legend(*ax.get_legend_handles_labels(), ...)``)."""
    x = np.arange(len(lengths))
    present = set(df.dtype)
    drawn = []
    if "float32" in present:
        c = length_curve(df, kind, "float32").loc[lengths]
        low = np.where(c["min"] > 0, c["min"], np.nan)
        plotting.band(ax, x, c["mean"], low, c["max"], label="Gemma 3 270M, float32: mean over channels",
                      marker="o", color="C0", alpha=0.18)
        ax.fill_between([], [], [], color="C0", alpha=0.18, linewidth=0, label="float32: min-max over channels")
        drawn += [c["mean"], low, c["max"]]
    if "bfloat16" in present:
        c = length_curve(df, kind, "bfloat16").loc[lengths]
        ax.plot(x, c["mean"], "s--", color="C1", label="Gemma 3 270M, bfloat16: mean over channels")
        drawn.append(c["mean"])
        if "float32" in present:
            prec = precision_table(df[df.kind == kind]).set_index("n").loc[lengths]
            floor = prec["bf16 rounding |y_bf16 - y_fp32|"]
            ax.plot(x, floor, ":", color="C1", linewidth=1.5, label="bf16 rounding error of y (mean |y_bf16 - y_fp32|)")
            drawn.append(floor)
    if paper:
        xs = [i for i, n in enumerate(lengths) if n in paper]
        ys = [paper[lengths[i]] for i in xs]
        ax.plot(xs, ys, "k^:", label="paper, Gemma 7B: mean (read off its plot)")
        drawn.append(ys)
    plotting.bf16_line(ax, label=r"bf16 precision line the paper draws ($2^{-7}$)")
    values = np.concatenate([np.asarray(v, np.float64).ravel() for v in drawn] + [[plotting.BF16_EPS]])
    values = values[np.isfinite(values) & (values > 0)]
    ax.set(
        yscale="log",
        ylim=(values.min() / 2, values.max() * 2),
        xticks=x,
        xticklabels=[str(n) for n in lengths],
        xlabel="sequence length n (ones or digits)",
        ylabel="|y_n - y*_(n+1)| per channel",
        title=title,
    )


def plot_precision(fig, axes, prec: pd.DataFrame, labels: Mapping[str, str]) -> None:
    """The precision figure (two panels): per construction (one colour each, names from ``labels``), the float32
    mean difference (solid) against bf16's rounding error of y (dotted) on a log length axis, and the share of
    bit-identical channels of the two bf16 representations. One legend below the panels: colours for the
    constructions, line styles for the two quantities."""
    from matplotlib.lines import Line2D

    if "bf16 rounding |y_bf16 - y_fp32|" not in prec:
        raise ValueError("plot_precision needs a precision_table with bfloat16 rows (DTYPES must include bfloat16)")
    handles = []
    for i, (kind, label) in enumerate(labels.items()):
        sub = prec[prec.kind == kind]
        color = f"C{i}"
        axes[0].plot(sub["n"], sub["fp32 mean diff"], "o-", color=color)
        axes[0].plot(sub["n"], sub["bf16 rounding |y_bf16 - y_fp32|"], "x:", color=color)
        axes[1].plot(sub["n"], sub["bf16 identical channels"], "o-", color=color)
        handles.append(Line2D([], [], color=color, marker="o", label=label))
    plotting.bf16_line(axes[0], label=None)
    axes[0].set(xscale="log", yscale="log", xlabel="sequence length n", ylabel="mean over channels of |Δy|",
                title="float32 difference vs bf16 rounding error")
    axes[1].set(xscale="log", ylim=(0, 1), xlabel="sequence length n", ylabel="share of channels",
                title="bf16: channels identical in both sequences")
    handles += [
        Line2D([], [], color="0.3", linestyle="-", label="float32 difference (mean over channels)"),
        Line2D([], [], color="0.3", linestyle=":", marker="x", label="bf16 rounding error of y (mean over channels)"),
        Line2D([], [], color="0.3", linestyle="--", label=r"bf16 precision line the paper draws ($2^{-7}$)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)


def precision_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, n), in sweep order: can bfloat16 resolve the pair?

    Columns: fp32 mean diff, fp32 same argmax and, when ``df`` has bfloat16 rows, bf16 mean diff, the
    bf16 rounding error (mean over seeds of the channel mean of |y_bf16 − y_fp32| for the shorter
    prompt), bf16 bit-identical, bf16 identical channels, bf16 same argmax and whether the float32
    difference is below the bf16 rounding error.
    """
    has_bf16 = "bfloat16" in set(df.dtype)
    rows = []
    for (kind, n), grp in df.groupby(["kind", "n"], sort=False):
        f = grp[grp.dtype == "float32"]
        row = {
            "kind": kind,
            "n": n,
            "fp32 mean diff": float(f["mean"].mean()),
            "fp32 same argmax": bool(f["same_argmax"].all()),
        }
        if has_bf16:
            b = grp[grp.dtype == "bfloat16"]
            noise = float(np.mean([np.abs(yb - yf).mean() for yb, yf in zip(b["y_a"], f["y_a"])]))
            row.update(
                {
                    "bf16 mean diff": float(b["mean"].mean()),
                    "bf16 rounding |y_bf16 - y_fp32|": noise,
                    "bf16 bit-identical": bool(b["identical"].all()),
                    "bf16 identical channels": float(b["identical_fraction"].mean()),
                    "bf16 same argmax": bool(b["same_argmax"].all()),
                    "fp32 diff < bf16 rounding": float(f["mean"].mean()) < noise,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def holds_from_n(table: pd.DataFrame, kind: str, column: str) -> int | None:
    """Smallest swept n from which ``column`` holds at every larger swept n for ``kind`` (None if the
    column is absent or does not hold at the largest n)."""
    sub = table[table.kind == kind].sort_values("n")
    if column not in sub or not bool(sub[column].iloc[-1]):
        return None
    ok = sub[column].to_numpy().astype(bool)
    j = len(ok) - 1
    while j > 0 and ok[j - 1]:
        j -= 1
    return int(sub["n"].iloc[j])
