"""Execute one notebook with a fresh kernel: what runs inside the jail (``autograder.sandbox``).

    python -m autograder.execute IN.ipynb OUT.ipynb [--cell-timeout S]

Every cell runs even after an error (``allow_errors``); a cell that runs past ``--cell-timeout``
is interrupted, gets a ``CellTimeoutError`` output and the next cell runs. If the kernel dies (out
of memory, ``os._exit``), the cells after it get a ``DeadKernelError`` output. OUT is written in
every case. Nothing here is trusted by the grader: it runs as the student's user, so the grader
checks that OUT holds the cells it sent and takes the points from the journal (``journal.py``).
"""
from __future__ import annotations

import argparse
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

TIMEOUT_ERROR = {"ename": "CellTimeoutError", "evalue": "the cell ran past the time limit",
                 "traceback": ["CellTimeoutError: the cell ran past the time limit"]}


def _error(ename: str, evalue: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"{ename}: {evalue}"])


class _Client(NotebookClient):
    """nbclient interrupts a cell past the timeout; this also leaves an error output in it."""

    async def _async_handle_timeout(self, timeout, cell=None):
        if cell is not None:
            cell.outputs.append(_error("CellTimeoutError", TIMEOUT_ERROR["evalue"]))
        return await super()._async_handle_timeout(timeout, cell)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.execute")
    parser.add_argument("notebook")
    parser.add_argument("out")
    parser.add_argument("--cell-timeout", type=int, default=120)
    args = parser.parse_args(argv)
    nb = nbformat.read(args.notebook, as_version=4)
    client = _Client(nb, timeout=args.cell_timeout, kernel_name="python3",
                            allow_errors=True, interrupt_on_timeout=True,
                            error_on_timeout=TIMEOUT_ERROR, startup_timeout=120,
                            record_timing=False, resources={"metadata": {"path": "."}})
    status = 0
    try:
        client.execute()
    except DeadKernelError as error:
        status = 3
        done = False
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if done:
                cell.outputs = [_error("DeadKernelError", "not run: the kernel had died")]
            elif cell.get("execution_count") is None and not cell.get("outputs"):
                cell.outputs = [_error("DeadKernelError", f"the kernel died: {error}"[:300])]
                done = True
    nbformat.write(nb, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
