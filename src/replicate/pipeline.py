"""Run a notebook with one profile's parameters: ``python -m replicate.pipeline run NOTEBOOK [--profile P]``.

What a run does:

1. reads ``params.yaml`` and picks ``notebooks.<stem>.<profile>`` (profile: ``--profile`` or the file's
   ``profile`` key); checks that every parameter exists in the notebook's ``parameters`` cell;
2. executes the notebook with papermill (progress bar on stderr), pointing its figure and metrics
   writers at a private staging directory;
3. on success, embeds the run record (git commit, profile, device, wall time) in the executed
   notebook's metadata and moves, each with an atomic rename, the figures into ``figures/``, the
   metrics JSON into ``data/metrics/`` and the executed notebook into ``reports/<stem>.ipynb``.

Long notebooks keep each finished unit of work (:mod:`replicate.resumable`) under
``data/units/<stem>/<profile>/`` while they run, keyed by the unit's inputs and a fingerprint of the code the
notebook imports; an interrupted run, started again, reuses them. The folder is removed once the notebook
has succeeded.

On failure nothing reaches those directories: the error names the failing cell, and the partly
executed notebook is kept as ``reports/<stem>.failed.ipynb`` for inspection. So an interrupted or
failed run never leaves a figure or metrics file that DVC would take as done.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from replicate import dvc_stages, io, outputs, resumable
from replicate.params import ParameterError, check_profile, load_params_file, notebook_params, repo_root


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the cell and the exception."""


def _staging_dir(root: Path, stem: str) -> Path:
    path = root / "reports" / ".staging" / stem
    if path.exists():
        shutil.rmtree(path)
    (path / "figures").mkdir(parents=True)
    (path / "metrics").mkdir(parents=True)
    return path


def units_directory(root: Path, stem: str, profile: str) -> Path:
    """Where a pipeline run keeps its finished units of work until the notebook succeeds."""
    return root / "data" / "units" / stem / profile


def notebook_parameter_names(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)).keys())


def check_parameters(notebook: Path, values: dict[str, Any]) -> None:
    declared = notebook_parameter_names(notebook)
    if not declared:
        raise ParameterError(f"{notebook}: no cell tagged 'parameters'; add one holding the smoke defaults")
    unknown = sorted(set(values) - declared)
    if unknown:
        raise ParameterError(
            f"params.yaml gives {unknown} to {notebook.name}, whose parameters cell defines only {sorted(declared)}; "
            "fix the name in params.yaml or add the parameter to the notebook"
        )


def _failed_cell(nb_path: Path) -> str:
    """Describe the first cell with an error output in a (partly) executed notebook."""
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:  # pragma: no cover - unreadable output notebook
        return "unknown cell"
    code_index = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code_index += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first_line = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                return (
                    f"cell {index} (code cell {code_index}, starting {first_line[:60]!r}): "
                    f"{out.get('ename')}: {out.get('evalue')}"
                )
    return "unknown cell"


def run_notebook(
    notebook: str | os.PathLike,
    profile: str | None = None,
    *,
    params_file: str | os.PathLike | None = None,
    progress: bool = True,
    kernel_name: str | None = None,
) -> dict[str, Path | list[Path]]:
    """Execute ``notebook`` at ``profile``; return the paths of the executed notebook, figures and metrics."""
    import nbformat
    import papermill

    root = repo_root()
    notebook = Path(notebook).resolve()
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    stem = notebook.stem
    if profile is None:
        profile = load_params_file(params_file).get("profile", "cpu")
    check_profile(profile)
    values = notebook_params(stem, profile, params_file)
    check_parameters(notebook, values)

    staging = _staging_dir(root, stem)
    staged_nb = staging / f"{stem}.ipynb"
    units_dir = units_directory(root, stem, profile)
    code = dvc_stages.stage_code_deps(root, f"python -m replicate.pipeline run {notebook}") or []
    fingerprint = resumable.code_fingerprint([notebook, *(root / c for c in code)], root)
    env_names = (outputs.FIGURES_ENV, outputs.METRICS_ENV, "REPLICATE_ROOT", resumable.UNITS_ENV,
                 resumable.FINGERPRINT_ENV)
    env_before = {k: os.environ.get(k) for k in env_names}
    os.environ[outputs.FIGURES_ENV] = str(staging / "figures")
    os.environ[outputs.METRICS_ENV] = str(staging / "metrics")
    os.environ["REPLICATE_ROOT"] = str(root)
    os.environ[resumable.UNITS_ENV] = str(units_dir)
    os.environ[resumable.FINGERPRINT_ENV] = fingerprint
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(staged_nb),
            parameters=values,
            progress_bar=progress,
            cwd=str(notebook.parent),
            kernel_name=kernel_name,
            log_output=False,
        )
    except papermill.PapermillExecutionError as err:
        failed = root / "reports" / f"{stem}.failed.ipynb"
        if staged_nb.exists():
            os.replace(staged_nb, failed)
        where = _failed_cell(failed) if failed.exists() else f"cell {err.exec_count}: {err.ename}: {err.evalue}"
        raise NotebookFailed(
            f"{notebook.name} failed at profile '{profile}' in {where}\n"
            f"  partly executed notebook: {failed.relative_to(root)}"
        ) from None
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    wall = time.perf_counter() - t0

    # Run record: the notebook's own (written with its metrics) plus the pipeline's view.
    metrics_files = sorted((staging / "metrics").glob("*.json"))
    run_record: dict[str, Any] = {"profile": profile, "pipeline_wall_time_s": round(wall, 3), "parameters": values}
    for path in metrics_files:
        with open(path, encoding="utf-8") as fh:
            run_record.update(json.load(fh).get("run", {}))
    nb = nbformat.read(staged_nb, as_version=4)
    nb.metadata["replicate"] = run_record
    io.write_text(staged_nb, nbformat.writes(nb))

    # Publish: atomic renames into the tracked locations (staging is on the same file system).
    published: dict[str, Any] = {"figures": [], "metrics": []}
    fig_dir = root / "figures"
    met_dir = root / "data" / "metrics"
    fig_dir.mkdir(parents=True, exist_ok=True)
    met_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted((staging / "figures").iterdir()):
        os.replace(path, fig_dir / path.name)
        published["figures"].append(fig_dir / path.name)
    for path in metrics_files:
        os.replace(path, met_dir / path.name)
        published["metrics"].append(met_dir / path.name)
    report = root / "reports" / f"{stem}.ipynb"
    os.replace(staged_nb, report)
    published["notebook"] = report
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(units_dir, ignore_errors=True)  # finished: its units are no longer needed
    (root / "reports" / f"{stem}.failed.ipynb").unlink(missing_ok=True)
    return published


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replicate.pipeline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a notebook at a profile")
    run.add_argument("notebook", help="path to notebooks/NN_topic.ipynb")
    run.add_argument("--profile", default=None, help="smoke | cpu | full (default: params.yaml's 'profile')")
    run.add_argument("--params", default=None, help="parameters file (default: params.yaml at the repository root)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("profiles", help="list the notebooks and profiles in params.yaml")
    args = parser.parse_args(argv)

    try:
        if args.command == "profiles":
            data = load_params_file()
            print(f"active profile: {data.get('profile', 'cpu')}")
            for name, block in data["notebooks"].items():
                print(f"{name}: " + "; ".join(f"{p}={block[p]}" for p in block))
            return 0
        out = run_notebook(args.notebook, args.profile, params_file=args.params, progress=not args.no_progress)
    except (ParameterError, NotebookFailed, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = repo_root()
    for kind in ("figures", "metrics"):
        for path in out[kind]:
            print(f"wrote {Path(path).relative_to(root)}")
    print(f"wrote {Path(out['notebook']).relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
