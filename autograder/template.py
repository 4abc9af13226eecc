"""The template of a batch: the release, and the instructor's solution run twice.

Once per batch (``build_template``): the release is generated from ``solutions/`` (nbgrader
``generate_assignment``), and the solution runs side by side in two jails, with the full test cells
(its journal is the *golden* journal every submission is compared with, ``journal.py``) and as a
student's notebook is run (its graded copy must score full marks against the golden journal, so a
test cell that ``graded_copy.strip_reference`` cut wrongly stops the batch before any student is
graded). Either failing raises ``RuntimeError`` with the cell named.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import journal, sandbox
from .graded_copy import GradedCopyError
from .notebooks import (grade_id, is_grade, is_solution, is_test, read_notebook, solved,
                        source_notebooks)
from .release import ReleaseError, build_release
from .run import JailRun, read_executed, run_in_jail


@dataclass(frozen=True)
class GradedCell:
    notebook: str
    grade_id: str
    max_score: float
    manual: bool          # a written answer graded by a person, not by tests


@dataclass(frozen=True)
class TemplateNotebook:
    source: str                       # the instructor's notebook, copied for this batch
    release: str                      # what students were given
    golden: dict[str, list[dict]]     # test cell -> its golden journal lines


@dataclass(frozen=True)
class Template:
    cells: list[GradedCell]
    notebooks: dict[str, TemplateNotebook]


def build_template(root: Path, assignment: str, work: Path, *, cell_timeout: int,
                   limits: sandbox.Limits, uid: int | None = None) -> Template:
    """Release, source and golden journal of each notebook, and the graded cells."""
    try:
        release_dir = build_release(root, assignment, work)
    except ReleaseError as error:
        raise RuntimeError(str(error)) from error
    cells, notebooks = [], {}
    for original in source_notebooks(root, assignment):
        path = work / "source" / original.name        # a snapshot: solutions/ may change mid-batch
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, path)
        source_nb = read_notebook(path)
        release_path = release_dir / path.name
        for cell in source_nb.cells:
            if is_grade(cell):
                cells.append(GradedCell(path.stem, grade_id(cell),
                                        float(cell.metadata.nbgrader.get("points", 0)),
                                        manual=is_solution(cell)))
        answer = solved(read_notebook(release_path), source_nb)
        try:
            runs = {"golden": journal.graded_notebook(answer, source_nb, with_expected=True),
                    "graded": journal.graded_notebook(answer, source_nb)}
        except GradedCopyError as error:
            raise RuntimeError(f"{path.name}: {error}") from error
        threads = max(1, (os.cpu_count() or 1) // 2)
        with ThreadPoolExecutor(2) as pool:     # two jails side by side: the cores are idle now
            done = {kind: pool.submit(run_in_jail, nb, work / f"{kind}-{path.stem}", timeout=600,
                                      cell_timeout=cell_timeout, threads=threads, limits=limits,
                                      uid=uid)
                    for kind, nb in runs.items()}
            done = {kind: future.result() for kind, future in done.items()}
        golden = _golden_journal(path.name, done["golden"])
        _check_graded_copy(path.name, runs["graded"], done["graded"], golden)
        notebooks[path.stem] = TemplateNotebook(str(path), str(release_path), golden)
    return Template(cells, notebooks)


def _golden_journal(name: str, run: JailRun) -> dict[str, list[dict]]:
    executed = read_executed(run) if run.status == "ok" else None
    if executed is None:
        raise RuntimeError(f"the solution of {name} did not run: {run.reason}\n{run.log[-2000:]}")
    for cell in executed.cells:
        error = journal.cell_error(cell) if is_test(cell) else None
        if error:
            raise RuntimeError(f"the solution fails its own test cell {grade_id(cell)} in "
                               f"{name}: {error[0]}: {error[1][:300]}")
    golden = journal.read_journal(run.journal)
    unchecked = [grade_id(cell) for cell in executed.cells
                 if is_test(cell) and not golden.get(grade_id(cell))]
    if unchecked:
        raise RuntimeError(
            f"test cell(s) {', '.join(unchecked)} of {name} record no check: a test cell earns "
            "its points only from course_lib.grading checks (check_close, check_shape, "
            "check_true), which the grader reads from outside the student's process. A plain "
            "assert cannot be verified there; write it as check_true(...)")
    return golden


def _check_graded_copy(name: str, sent, run: JailRun, golden: dict) -> None:
    """The solution, run as a student's notebook is, must score every test cell."""
    if run.status != "ok":
        raise RuntimeError(f"the graded copy of the solution of {name} did not run: {run.reason}")
    student = journal.read_journal(run.journal)
    for cell in sent.cells:
        if is_test(cell):
            gid = grade_id(cell)
            result = journal.verdict(gid, 1.0, None, golden.get(gid, []), student.get(gid, []))
            if not result.passed:
                raise RuntimeError(
                    f"the solution of {name} fails test cell {gid} as graded for students "
                    f"({result.messages[0]}): a statement removed with the expected values "
                    "changed the test's inputs (a random draw?); compute it inside the expected "
                    "argument")
