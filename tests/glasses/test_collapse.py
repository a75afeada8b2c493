"""Collapse measures and the Gemma probe's summaries (replicate.glasses.collapse), against direct
NumPy computations and a fake model; the probe on the real Gemma 3 270M is marked ``lm``."""

from __future__ import annotations

import types

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import pyplot  # noqa: E402

from replicate import resumable  # noqa: E402
from replicate.glasses import collapse  # noqa: E402


def test_difference_measures_match_numpy():
    g = np.random.default_rng(0)
    a, b = g.normal(size=(3, 5, 16)), g.normal(size=(3, 5, 16))
    norms = collapse.difference_norms(a, b)
    d = a - b
    np.testing.assert_allclose(norms[..., collapse.NORM_INDEX["l1"]], np.abs(d).sum(-1))
    np.testing.assert_allclose(norms[..., collapse.NORM_INDEX["l2"]], np.linalg.norm(d, axis=-1))
    np.testing.assert_allclose(norms[..., collapse.NORM_INDEX["linf"]], np.abs(d).max(-1))
    one = collapse.representation_difference(a[0, 0], b[0, 0])
    np.testing.assert_allclose([one["l1"], one["l2"], one["linf"]], norms[0, 0], rtol=1e-5)
    assert not one["identical"] and collapse.representation_difference(a[0, 0], a[0, 0])["identical"]
    a_low, b_low = a + 0.01, b - 0.03
    np.testing.assert_allclose(collapse.rounding_error(a, b, a_low, b_low), np.full((3, 5), 0.03))


class FakeModel:
    """Deterministic stand-in with Gemma's probe interface: tokens are characters; y_t is a running mean
    of one-hot character embeddings (causal, so the last-token vector of a prefix is a row of the longer run)."""

    def __init__(self, dtype=jnp.float32):
        self.dtype = dtype
        self.params = {"embed": jnp.asarray(np.eye(128, 8, dtype=np.float32) + 0.1, dtype)}

    def tokenize(self, text):
        return [2] + [ord(c) % 128 for c in text]

    def forward(self, ids, attentions=False, all_logits=False):
        e = np.asarray(self.params["embed"], np.float32)[np.asarray(ids)]
        y = np.cumsum(e, axis=0) / np.arange(1, len(ids) + 1)[:, None]
        return types.SimpleNamespace(hidden_states=jnp.asarray(y[None], self.dtype))


def test_pair_difference_with_a_fake_model():
    m = FakeModel()
    d = collapse.pair_difference(m, "abc1", "abc11")
    assert d.shared_forward and (d.tokens_a, d.tokens_b) == (5, 6)
    ya = np.asarray(m.forward(m.tokenize("abc1")).hidden_states[-1, -1])
    yb = np.asarray(m.forward(m.tokenize("abc11")).hidden_states[-1, -1])
    np.testing.assert_allclose(d.y_a, ya, rtol=1e-6)
    np.testing.assert_allclose(d.y_b, yb, rtol=1e-6)
    diff = np.abs(ya.astype(np.float64) - yb)
    assert d.mean_abs == pytest.approx(diff.mean()) and d.max_abs == pytest.approx(diff.max())
    assert d.rel_l2 == pytest.approx(np.linalg.norm(ya - yb) / np.linalg.norm(ya), rel=1e-5)
    head = np.asarray(m.params["embed"])
    assert d.argmax_a == int((head @ ya).argmax())
    c = collapse.pair_difference(m, "x1,111", "x11,111")
    assert not c.shared_forward
    same = collapse.pair_difference(m, "abc", "abc")
    assert same.identical and same.identical_fraction == 1.0 and same.max_abs == 0.0


def test_gemma_pair_sweep_and_summaries_with_a_fake_model():
    models = {"float32": FakeModel(), "bfloat16": FakeModel(jnp.bfloat16)}
    df = collapse.gemma_pair_sweep(models, ["count_ones", "count_digits"], [1, 4, 16], digit_seeds=2)
    assert len(df) == 2 * (3 + 3 * 2)
    curve = collapse.length_curve(df, "count_digits", "float32")
    sub = df[(df.kind == "count_digits") & (df.dtype == "float32")]
    for n in (1, 4, 16):
        rows = sub[sub.n == n]
        assert curve.loc[n, "mean"] == pytest.approx(rows["mean"].mean()) and curve.loc[n, "min"] == rows["min"].min()
        assert curve.loc[n, "max"] == rows["max"].max() and curve.loc[n, "tokens"] == rows["tokens"].max()
    prec = collapse.precision_table(df)
    assert list(prec.kind.unique()) == ["count_ones", "count_digits"] and len(prec) == 6
    r = prec[(prec.kind == "count_ones") & (prec.n == 4)].iloc[0]
    f = df[(df.kind == "count_ones") & (df.n == 4) & (df.dtype == "float32")].iloc[0]
    b = df[(df.kind == "count_ones") & (df.n == 4) & (df.dtype == "bfloat16")].iloc[0]
    assert r["bf16 rounding |y_bf16 - y_fp32|"] == pytest.approx(np.abs(b.y_a - f.y_a).mean())
    assert r["fp32 diff < bf16 rounding"] == (f["mean"] < r["bf16 rounding |y_bf16 - y_fp32|"])
    assert "bf16 mean diff" not in collapse.precision_table(df[df.dtype == "float32"])
    fig, ax = pyplot.subplots()
    collapse.plot_length_curves(ax, df, "count_ones", [1, 4, 16], "t", {1: 0.9, 16: 0.1})
    by_label = {ln.get_label(): ln for ln in ax.get_lines()}
    f32 = by_label["Gemma 3 270M, float32: mean over channels"]
    np.testing.assert_allclose(f32.get_ydata(), collapse.length_curve(df, "count_ones", "float32")["mean"])
    bf16 = by_label["Gemma 3 270M, bfloat16: mean over channels"]
    np.testing.assert_allclose(bf16.get_ydata(), collapse.length_curve(df, "count_ones", "bfloat16")["mean"])
    floor = by_label["bf16 rounding error of y (mean |y_bf16 - y_fp32|)"]
    np.testing.assert_allclose(floor.get_ydata(), prec[prec.kind == "count_ones"]["bf16 rounding |y_bf16 - y_fp32|"])
    assert len(ax.collections) == 2  # one band (float32) and its legend patch: no bfloat16 band
    lo, hi = ax.get_ylim()  # nothing drawn is clipped by the log axis
    drawn = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in ax.get_lines()])
    assert lo <= drawn[drawn > 0].min() and hi >= drawn.max()
    pyplot.close(fig)
    fig, axes = pyplot.subplots(1, 2, layout="constrained")
    collapse.plot_precision(fig, axes, prec, {"count_ones": "(a)", "count_digits": "(b)"})
    assert axes[0].get_xscale() == "log" and len(fig.legends) == 1  # no symlog (no negative lengths), one legend
    assert len(fig.legends[0].get_texts()) == 2 + 3  # constructions, then the three line styles
    pyplot.close(fig)
    with pytest.raises(ValueError, match="bfloat16"):
        collapse.plot_precision(fig, axes, collapse.precision_table(df[df.dtype == "float32"]), {"count_ones": "(a)"})


def test_holds_from_n():
    t = pd.DataFrame(
        {"kind": ["a"] * 4 + ["b"] * 2, "n": [1, 4, 16, 64, 1, 4], "ok": [True, False, True, True, True, False]}
    )
    assert collapse.holds_from_n(t, "a", "ok") == 16  # holds at 16 and every larger n
    assert collapse.holds_from_n(t.iloc[::-1], "a", "ok") == 16  # order of rows does not matter
    assert collapse.holds_from_n(t, "b", "ok") is None  # fails at the largest n
    assert collapse.holds_from_n(t, "a", "missing") is None


@pytest.mark.lm
@pytest.mark.slow
def test_pair_difference_shared_forward_matches_separate_forwards(gemma_model):
    model = gemma_model
    # Fig 5's construction: b repeats a's last token, so one causal forward of b gives both.
    a = "How many ones are in the following sequences? " + "1" * 5
    b = a + "1"
    d = collapse.pair_difference(model, a, b)
    assert d.shared_forward and d.tokens_b == d.tokens_a + 1
    y_a = np.asarray(model.final_representation(model.tokenize(a)))
    y_b = np.asarray(model.final_representation(model.tokenize(b)))
    diff = np.abs(y_a - y_b)
    np.testing.assert_allclose(d.y_a, y_a, atol=2e-3)
    np.testing.assert_allclose(d.y_b, y_b, atol=2e-3)
    np.testing.assert_allclose([d.mean_abs, d.max_abs], [diff.mean(), diff.max()], rtol=1e-3, atol=1e-4)
    assert d.min_abs <= d.mean_abs <= d.max_abs and not d.identical and d.identical_fraction < 0.5
    np.testing.assert_allclose(d.rel_l2, np.linalg.norm(y_a - y_b) / np.linalg.norm(y_a), rtol=1e-3)
    head = np.asarray(model.params["embed"])
    assert (d.argmax_a, d.argmax_b) == (int((head @ y_a).argmax()), int((head @ y_b).argmax()))
    # A pair whose tokens do not extend (the comma variant regroups) takes two forwards.
    c = collapse.pair_difference(
        model, "Can you copy the following number? 1,111", "Can you copy the following number? 11,111"
    )
    assert not c.shared_forward and c.mean_abs > 0
    # The same prompt twice: bit-identical, zero difference.
    same = collapse.pair_difference(model, a, a)
    assert same.identical and same.identical_fraction == 1.0 and same.max_abs == 0.0 and same.same_argmax


def test_resumable_pair_sweep_equals_the_sweep_and_reuses_finished_units(tmp_path):
    models = {"float32": FakeModel(), "bfloat16": FakeModel(jnp.bfloat16)}
    kinds, lengths = ["count_ones", "count_digits"], [1, 4]
    want = collapse.gemma_pair_sweep(models, kinds, lengths, digit_seeds=2)
    off = collapse.resumable_pair_sweep(resumable.Units(None), models, kinds, lengths, digit_seeds=2)
    pd.testing.assert_frame_equal(off, want)
    units = resumable.Units(tmp_path / "units", fingerprint="code")
    pd.testing.assert_frame_equal(collapse.resumable_pair_sweep(units, models, kinds, lengths, 2), want)
    assert len(list((tmp_path / "units").glob("*"))) == 4  # one unit per (dtype, construction)

    class Counting(FakeModel):
        calls = 0

        def forward(self, ids, attentions=False, all_logits=False):
            Counting.calls += 1
            return super().forward(ids, attentions, all_logits)

    again = collapse.resumable_pair_sweep(units, {"float32": Counting(), "bfloat16": Counting(jnp.bfloat16)},
                                          kinds, lengths, 2)
    pd.testing.assert_frame_equal(again, want)
    assert Counting.calls == 0  # every unit came from the store
    collapse.resumable_pair_sweep(units, {"float32": Counting()}, kinds, [1, 4, 8], 2)
    assert Counting.calls > 0  # other lengths: other units
