"""Points from outside the student's process: the graded notebook, the journal and its verdicts.

The student's kernel can patch anything in its own process (``torch.allclose``, ``isinstance``,
the test helpers themselves), so a test cell that "ran without error" proves little. Instead:

1. ``graded_notebook`` builds what the kernel runs: the student's answers, and every locked cell
   (instructions, set-up, tests) from the instructor's source. In each test cell the ``expected``
   argument of ``check_close`` becomes ``None`` and its ``mistakes`` are dropped, so the right
   answers are never computed in the student's process; a first line tags the cell.
2. ``course_lib.grading`` appends each check's value to the journal (``COURSE_GRADING_JOURNAL``).
3. The instructor's solution runs the same way once per batch, with the full test cells: its
   journal (the *golden* journal) holds every check's expected value, tolerance, hint and the
   values of the known mistakes.
4. ``verdicts`` gives a test cell its points only if the cell reported no error AND its journal
   lines match the golden ones one for one: same checks in the same order, the student's values
   within the golden tolerance of the golden expected values (compared here, in the grader).

What the student controls (the journal file, the executed notebook) is parsed as untrusted data.
"""
from __future__ import annotations

import ast
import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

from nbformat import NotebookNode

from .notebooks import (HIDDEN_TESTS, SOLUTION, grade_id, is_solution, is_test, nbgrader_meta,
                        region_flags, without_markers)

JOURNAL = "journal.jsonl"
MAX_JOURNAL_LINES = 20000
GRADING_MODULE = "course_lib.grading"


class NotebookMismatch(ValueError):
    """The executed notebook does not hold the cells the grader sent."""


# --- 1. the notebook the kernel runs ----------------------------------------------------------------

class _DropExpected(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else None
        if name == "check_close":
            if len(node.args) >= 3:
                node.args[2] = ast.Constant(None)
            node.keywords = [k for k in node.keywords if k.arg != "mistakes"]
            for keyword in node.keywords:
                if keyword.arg == "expected":
                    keyword.value = ast.Constant(None)
        return node


def test_source(source: str, cell_id: str, *, with_expected: bool, tag: bool) -> str:
    """The instructor's test cell as the kernel runs it (markers removed, see the module doc)."""
    code = without_markers(source, HIDDEN_TESTS)
    if not with_expected:
        tree = ast.parse(code)                  # a test cell that does not parse fails the build
        code = ast.unparse(ast.fix_missing_locations(_DropExpected().visit(tree)))
    if tag:
        code = (f"__import__({GRADING_MODULE!r}, fromlist=['_begin_cell'])"
                f"._begin_cell({cell_id!r})\n" + code)
    return code


def uses_journal(source_nb: NotebookNode) -> bool:
    return any(GRADING_MODULE in cell.source for cell in source_nb.cells)


def graded_notebook(student_nb: NotebookNode, source_nb: NotebookNode, *,
                    with_expected: bool = False) -> NotebookNode:
    """The student's notebook with every locked cell taken from the instructor's source.

    ``student_nb`` has already been repaired (``grade.restore_grade_cells``): deleted test cells
    are back. Answer cells keep the student's source; cells the student added are kept; outputs
    are cleared. ``with_expected=True`` keeps the full test cells (the golden run).
    """
    source = {grade_id(c): c for c in source_nb.cells if grade_id(c)}
    tag = uses_journal(source_nb)
    nb = copy.deepcopy(student_nb)
    for cell in nb.cells:
        ref = source.get(grade_id(cell))
        if ref is not None and ref.cell_type == cell.cell_type and not is_solution(ref):
            cell.source = test_source(ref.source, grade_id(ref), with_expected=with_expected,
                                      tag=tag) if is_test(ref) else ref.source
            cell.metadata["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def hidden_lines(source_nb: NotebookNode, graded_nb: NotebookNode | None = None,
                 released_nb: NotebookNode | None = None, min_length: int = 12) -> set[str]:
    """Stripped lines an output must not show: the solutions and the hidden tests, as written and
    as sent to the kernel (test-cell lines of ``graded_nb``), less every line the release shows."""
    lines: set[str] = set()
    for cell in source_nb.cells:
        for markers in (HIDDEN_TESTS, SOLUTION):
            for line, where in region_flags(cell.source, markers):
                if where == "inside":
                    lines.add(line.strip())
    for cell in graded_nb.cells if graded_nb is not None else []:
        if is_test(cell):
            lines.update(line.strip() for line in cell.source.splitlines())
    visible = {line.strip() for cell in (released_nb.cells if released_nb is not None else [])
               for line in cell.source.splitlines()}
    return {line for line in lines if len(line) >= min_length and line not in visible}


# --- 2. reading what came back ---------------------------------------------------------------------

def read_journal(text: str) -> dict[str, list[dict]]:
    """cell grade_id -> its journal lines, in order. Malformed lines are dropped."""
    cells: dict[str, list[dict]] = {}
    for line in text.splitlines()[:MAX_JOURNAL_LINES]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("cell"), str):
            cells.setdefault(entry["cell"], []).append(entry)
    return cells


def check_executed(sent: NotebookNode, executed: NotebookNode) -> None:
    """Raise NotebookMismatch unless ``executed`` holds the cells of ``sent``, in order."""
    if len(sent.cells) != len(executed.cells):
        raise NotebookMismatch(f"{len(executed.cells)} cells came back, {len(sent.cells)} sent")
    for index, (a, b) in enumerate(zip(sent.cells, executed.cells)):
        if a.cell_type != b.cell_type or a.source != b.source:
            raise NotebookMismatch(f"cell {index} came back changed")


def cell_error(cell: NotebookNode) -> tuple[str, str] | None:
    """(ename, first line of evalue) of the first error output of a code cell, else None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            evalue = str(output.get("evalue", "")).strip()
            return str(output.get("ename", "Error")), evalue
    return None


# --- 3. the comparison -----------------------------------------------------------------------------

@dataclass
class Verdict:
    grade_id: str
    max_score: float
    score: float = 0.0
    checks: int = 0               # checks of the cell in the golden journal
    passed_checks: int = 0
    messages: list[str] = field(default_factory=list)   # safe to show the student

    @property
    def passed(self) -> bool:
        return self.score == self.max_score


def _values(plain: Any) -> tuple[tuple[int, ...], list[float]] | None:
    """(shape, flat float values) of a journal value, or None when it is not well formed."""
    if not isinstance(plain, dict):
        return None
    shape, values = plain.get("shape"), plain.get("values")
    if not isinstance(shape, list) or not isinstance(values, list) \
            or not all(isinstance(n, int) and n >= 0 for n in shape):
        return None
    if math.prod(shape) != len(values) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return tuple(shape), [float(v) for v in values]


def _gap(got: list[float], expected: list[float], atol: float, rtol: float) -> float | None:
    """Largest excess over the tolerance (None when all within); infinities must match exactly."""
    worst = None
    for g, e in zip(got, expected):
        if math.isinf(e) or math.isinf(g):
            ok = g == e
            diff = 0.0 if ok else math.inf
        else:
            diff = abs(g - e)
            ok = diff <= atol + rtol * abs(e)        # torch.allclose's rule; NaN is never close
        if not ok:
            worst = diff if worst is None or not diff <= worst else worst
    return worst


def _close_message(golden: dict, student: dict) -> str | None:
    """None when the student's value passes the golden check, else the teaching message."""
    name, hint = str(golden.get("name")), str(golden.get("hint", ""))
    expected = _values(golden.get("expected"))
    got = _values(student.get("got"))
    if expected is None:
        return f"{name}: the solution recorded no expected value (report this to the staff)"
    if got is None:
        kind = str(student.get("got_type", "unknown"))[:60]
        return (f"{name}: wrong type: got a {kind}, expected a torch tensor or a number. "
                f"HINT: {hint}")
    if got[0] != expected[0]:
        return f"{name}: wrong shape: got {got[0]}, expected {expected[0]}. HINT: {hint}"
    atol, rtol = float(golden.get("atol", 1e-5)), float(golden.get("rtol", 1e-4))
    diff = _gap(got[1], expected[1], atol, rtol)
    if diff is None:
        return None
    for mistake_hint, value in (golden.get("mistakes") or {}).items():
        wrong = _values(value)
        if wrong is not None and wrong[0] == got[0] and _gap(got[1], wrong[1], atol, rtol) is None:
            return f"{name}: matches a known mistake. HINT: {mistake_hint}"
    return f"{name}: wrong values (largest difference {diff:.3g}). HINT: {hint}"


def _check_message(golden: dict, student: dict) -> str | None:
    name = str(golden.get("name"))
    if student.get("kind") != golden.get("kind") or str(student.get("name")) != name:
        return f"{name}: this check was not reached where expected (checks out of order)"
    kind = golden.get("kind")
    if kind == "close":
        return _close_message(golden, student)
    if kind == "shape":
        if student.get("got") != golden.get("expected"):
            got = student.get("got")
            return (f"{name}: wrong shape: got {str(got)[:80]}, expected {golden.get('expected')}."
                    f" HINT: {golden.get('hint', '')}")
        return None
    if kind == "true":
        return None if student.get("got") is True else f"{name}: HINT: {golden.get('hint', '')}"
    return f"{name}: unknown check kind {kind!r}"


def verdict(cell_id: str, max_score: float, error: tuple[str, str] | None,
            golden: list[dict], student: list[dict]) -> Verdict:
    """Points of one test cell (see the module docstring)."""
    result = Verdict(cell_id, max_score, checks=len(golden))
    for index, expected in enumerate(golden):
        if index >= len(student):
            result.messages.append(f"{expected.get('name')}: not reached")
            break
        message = _check_message(expected, student[index])
        if message is None:
            result.passed_checks += 1
        else:
            result.messages.append(message)
            break                       # later checks of the cell may depend on this one
    if len(student) > len(golden):
        result.messages.append("the cell recorded more checks than the test has")
    if error is not None:
        ename, evalue = error
        first = evalue.splitlines()[0] if evalue else ""
        if ename == "NotImplementedError" and not first:
            first = "the answer still raises NotImplementedError: replace that line with your code"
        result.messages.insert(0, f"{ename}: {first}"[:500])
    if error is None and not result.messages and result.passed_checks == len(golden):
        result.score = max_score
    return result

