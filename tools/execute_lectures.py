"""Execute lectures in place and save them the way the repository keeps them (``make notebooks``).

    python tools/execute_lectures.py lectures/01_infonce.ipynb [...]   # run, time, save
    python tools/execute_lectures.py --strip-only lectures/*.ipynb      # only normalise the outputs

Each lecture runs top to bottom in a fresh ``python3`` kernel at the CPU scale, from the
``lectures/`` folder, with one math thread (as CI runs it); the time of every code cell is printed
and the run stops at the first error without saving. The saved copy keeps no widget state: a live
widget exists only while a kernel runs, and the state ipywidgets 8 writes cannot be shown by
ipywidgets 7 (Colab) or by viewers without a widget manager (GitHub). Every widget cell draws a
static figure at the default values first, and that figure is what a saved copy shows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def strip_widgets(notebook: dict) -> int:
    """Remove the saved widget state and every widget-view output; return how many outputs went."""
    notebook.get("metadata", {}).pop("widgets", None)
    removed = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        kept = [o for o in cell.get("outputs", []) if WIDGET_VIEW not in o.get("data", {})]
        removed += len(cell.get("outputs", [])) - len(kept)
        cell["outputs"] = kept
    return removed


def save(notebook: dict, path: Path) -> None:
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def execute(path: Path, cell_timeout: int) -> dict | None:
    """The executed notebook as a dict, or None if a cell failed (printed)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            began = time.perf_counter()
            try:
                client.execute_cell(cell, index)
            except Exception as error:  # nbclient's CellExecutionError and timeouts: report, don't save
                print(f"{path}: cell {index} failed: {str(error).strip().splitlines()[-1][:300]}")
                return None
            first = cell.source.splitlines()[0][:70] if cell.source else ""
            print(f"  cell {index:3d} {time.perf_counter() - began:7.1f} s  {first}", flush=True)
    print(f"{path}: {time.perf_counter() - start:.1f} s")
    return json.loads(nbformat.writes(notebook))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lectures", nargs="+", type=Path)
    parser.add_argument("--strip-only", action="store_true", help="do not execute; only drop widget state")
    parser.add_argument("--cell-timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for path in args.lectures:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"lectures must be .ipynb files, got {path}")
        notebook = json.loads(path.read_text()) if args.strip_only else execute(path, args.cell_timeout)
        if notebook is None:
            return 1
        removed = strip_widgets(notebook)
        save(notebook, path)
        print(f"{path}: saved ({removed} widget output(s) dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
