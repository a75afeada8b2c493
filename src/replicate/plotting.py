"""One figure style for the whole project, and atomic saving under the paper-figure name.

Usage in a notebook::

    from replicate import plotting
    plotting.set_style()
    fig, ax = plotting.subplots()
    ...
    plotting.save_figure(fig, "glasses_fig5_collapse_gemma")   # -> figures/glasses_fig5_collapse_gemma.png

Names follow ``<paper>_fig<N>_<what>`` (papers: ``recode``, ``glasses``, ``pac``), or
``<notebook stem>`` for figures with no paper counterpart.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

if "inline" not in matplotlib.get_backend().lower():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from replicate import io, outputs  # noqa: E402

PALETTE = "colorblind"
DPI = 150
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")

#: Dashed reference line used by the glasses paper: bf16 machine epsilon 2^-7.
BF16_EPS = 2.0**-7


def set_style(context: str = "notebook") -> None:
    """Apply the project style: seaborn whitegrid, colour-blind palette, readable sizes."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE)
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "figure.autolayout": False,
            # Deterministic PNG/SVG metadata (no creation date), so identical figures hash identically.
            "svg.hashsalt": "replicate",
        }
    )


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 5.0, height: float = 3.6, **kwargs):
    """``plt.subplots`` with the project style and a per-panel size in inches."""
    set_style()
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)


class FigurePath(type(Path())):
    """The path of a saved figure: a ``Path`` that displays nothing when it ends a notebook cell.

    ``plotting.save_figure(fig, name)`` as a cell's last line would otherwise print ``PosixPath('...')`` (with the
    machine's absolute path) into the executed notebook; ``print(path)`` and every ``Path`` operation still work
    (paths derived from it, such as ``path.parent``, are ``FigurePath`` too).
    """

    def _ipython_display_(self) -> None:  # IPython's display hook: show nothing
        return None


def save_figure(fig, name: str, *, directory: str | Path | None = None, fmt: str = "png") -> FigurePath:
    """Save ``fig`` atomically as ``<figures dir>/<name>.<fmt>`` and return the path (a :class:`FigurePath`).

    The directory is the pipeline's (``figures/`` under ``dvc repro``) or ``reports/scratch/figures``
    when the notebook is run by hand. ``name`` must be lower-case letters, digits, ``_`` or ``-``.
    """
    if not _NAME.match(name):
        raise ValueError(
            f"figure name {name!r}: use lower-case letters, digits, '_' and '-' only "
            "(e.g. 'glasses_fig5_collapse_gemma')")
    directory = Path(directory) if directory is not None else outputs.figures_dir()
    path = directory / f"{name}.{fmt}"
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI, metadata={"Software": None} if fmt == "png" else None)
    return FigurePath(path)


def band(ax, x, mean, low, high, *, label: str | None = None, color=None, alpha: float = 0.25, **line_kwargs):
    """Plot a mean line with a shaded [low, high] band (min-max or confidence interval)."""
    (line,) = ax.plot(x, mean, label=label, color=color, **line_kwargs)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def bf16_line(ax, *, label: str = r"bf16 precision ($2^{-7}$)") -> None:
    """The dashed bf16-epsilon reference line the glasses paper draws on its collapse plots."""
    ax.axhline(BF16_EPS, color="0.3", linestyle="--", linewidth=1, label=label)
