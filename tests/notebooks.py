"""Run a notebook top to bottom like CI does: parameters injected, setup cells skipped, on the CPU."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SKIP_TAG = "skip-execution"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def prepare(name: str, parameters: dict) -> nbformat.NotebookNode:
    """notebooks/<name> as CI runs it: cells tagged `skip-execution` (installs) dropped, and `parameters`
    overriding its `parameters` cell from a new cell right after it, as papermill does."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        raise AssertionError(f"{name} has no cell tagged 'parameters'")
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if SKIP_TAG in tags:
            continue
        cells.append(cell)
        if "parameters" in tags:
            cells.append(nbformat.v4.new_code_cell("# injected parameters"))
    nb.cells = cells
    inject(nb, parameters)
    return nb


def execute(name: str, parameters: dict, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute `prepare(name, parameters)` in `cwd` on the CPU; returns the executed notebook."""
    nb = prepare(name, parameters)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    """All stream and text outputs of an executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def shown_error(cell: nbformat.NotebookNode) -> str | None:
    """The error an executed cell shows, as a person reads it (its traceback lines, colours dropped); None if none."""
    errors = [out for out in cell.get("outputs", []) if out.output_type == "error"]
    return "\n".join(ANSI.sub("", line) for line in errors[-1].traceback) if errors else None


def error_of_the_cell(nb: nbformat.NotebookNode, code: str, cwd: Path) -> str | None:
    """Run `nb`'s cells in `cwd` up to the code cell whose source contains `code`; the error it shows (None if none)."""
    last = cell_index(nb, code)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for index in range(last + 1):
            client.execute_cell(nb.cells[index], index)
    return shown_error(nb.cells[last])


def cell_index(nb: nbformat.NotebookNode, code: str) -> int:
    """The index of the one code cell of `nb` whose source contains `code`."""
    [index] = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and code in cell.source]
    return index


def inject(nb: nbformat.NotebookNode, parameters: dict) -> int:
    """Set the injected parameters cell of a `prepare`d notebook to `parameters`; returns its index."""
    index = cell_index(nb, "# injected parameters")
    nb.cells[index].source = "# injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    return index
