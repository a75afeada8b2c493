"""Store the reference outputs nbval compares against, for cells marked ``# NBVAL_CHECK_OUTPUT``.

Usage: ``python tools/store_check_outputs.py notebooks/NN_topic.ipynb [...]``

Executes each notebook at its stored (smoke) defaults with papermill, then copies the outputs of the
``# NBVAL_CHECK_OUTPUT`` cells (only those: notebooks stay small and diff-able) into the source
notebook. Every other cell's outputs are cleared. Rerun after changing what such a cell prints.
"""

import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

from replicate import io

MARK = "# NBVAL_CHECK_OUTPUT"


def store(path: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / path.name
        papermill.execute_notebook(str(path), str(executed), cwd=str(path.parent), progress_bar=False)
        ran = nbformat.read(executed, as_version=4)
    src = nbformat.read(path, as_version=4)
    ran_cells = [c for c in ran.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert len(ran_cells) == len(src.cells), "cell count changed during execution"
    stored = 0
    for cell, done in zip(src.cells, ran_cells):
        if cell.cell_type != "code":
            continue
        if cell.source.lstrip().startswith(MARK):
            cell.outputs = [o for o in done.outputs if o.get("output_type") in ("stream", "execute_result")]
            cell.execution_count = done.execution_count  # nbval ignores outputs of cells marked unrun
            stored += 1
        else:
            cell.outputs = []
            cell.execution_count = None
    io.write_text(path, nbformat.writes(src))
    return stored


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}: stored outputs of {store(Path(arg))} checked cell(s)")
