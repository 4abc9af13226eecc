"""Points from outside the student's process: the graded notebook, the journal and its verdicts.

Trust model: everything that comes out of a student's jail (this journal, the executed notebook,
exit codes, log lines) is attacker-controlled. The kernel can patch anything in its own process
(``torch.allclose``, ``isinstance``, the test helpers) and rewrite any file it writes. So:

1. ``graded_notebook`` builds what the kernel runs: the student's answers, and every locked cell
   (instructions, set-up, tests) from the instructor's source. Each test cell is cut down by
   ``strip_reference`` to the calls of the student's functions on fixed inputs and the checks that
   record what they returned: ``expected`` and ``mistakes`` arguments are dropped, and with them
   every oracle and every variable that only fed them. No expected value and no reference
   computation ever exists in the student's process. A first line tags the cell.
2. ``course_lib.grading`` appends each check's value to the journal (``COURSE_GRADING_JOURNAL``).
3. The instructor's solution runs the same way once per batch, with the full test cells: its
   journal (the *golden* journal) holds every check's expected value, tolerance, hint and the
   values of the known mistakes.
4. ``verdict`` gives a test cell its points only if its journal lines match the golden ones one
   for one: the same checks in the same order, the student's values within the golden tolerance
   of the golden expected values (compared here, in the grader). Whether the cell's outputs show
   an error plays no part: it is only quoted in the feedback.

The journal is parsed under limits (``read_journal``, ``_values``): a forged line cannot make the
grader spend more than a few milliseconds on it.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from nbformat import NotebookNode

from .graded_copy import answer_names, strip_reference
from .notebooks import (HIDDEN_TESTS, SOLUTION, grade_id, is_solution, is_test, region_flags,
                        without_markers)

JOURNAL = "journal.jsonl"
MAX_JOURNAL_LINES = 20000
GRADING_MODULE = "course_lib.grading"


class NotebookMismatch(ValueError):
    """The executed notebook does not hold the cells the grader sent."""


# --- 1. the notebook the kernel runs --------------------------------------------------------------

def test_source(source: str, cell_id: str, *, with_expected: bool, tag: bool,
                answers: frozenset[str] = frozenset()) -> str:
    """The instructor's test cell as the kernel runs it: markers removed, and without
    ``with_expected`` every reference computation removed (``strip_reference``)."""
    code = without_markers(source, HIDDEN_TESTS)
    if not with_expected:
        code = strip_reference(code, set(answers), cell_id)
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
    answers = answer_names(source_nb)
    nb = copy.deepcopy(student_nb)
    for cell in nb.cells:
        ref = source.get(grade_id(cell))
        if ref is not None and ref.cell_type == cell.cell_type and not is_solution(ref):
            cell.source = test_source(ref.source, grade_id(ref), with_expected=with_expected,
                                      tag=tag, answers=answers) if is_test(ref) else ref.source
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


# --- 2. reading what came back --------------------------------------------------------------------

MAX_LINE_CHARS = 4 << 20          # one journal line; the largest check records ~10^5 values
MAX_VALUES = 1 << 20              # values in one recorded tensor
MAX_DIMS = 16


def read_journal(text: str) -> dict[str, list[dict]]:
    """cell grade_id -> its journal lines, in order. Malformed or oversized lines are dropped."""
    cells: dict[str, list[dict]] = {}
    for line in text.splitlines()[:MAX_JOURNAL_LINES]:
        if len(line) > MAX_LINE_CHARS:
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):   # also ints past Python's 4300-digit limit
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


# --- 3. the comparison ----------------------------------------------------------------------------

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
    """(shape, flat float values) of a journal value, or None when it is not well formed.

    Untrusted: the shape is checked dimension by dimension against ``MAX_VALUES`` before any
    product is taken, and every value must be a float or an int that a float can hold."""
    if not isinstance(plain, dict):
        return None
    shape, values = plain.get("shape"), plain.get("values")
    if not isinstance(shape, list) or not isinstance(values, list) or len(shape) > MAX_DIMS \
            or len(values) > MAX_VALUES:
        return None
    size = 1
    for n in shape:
        if type(n) is not int or not 0 <= n <= MAX_VALUES:
            return None
        size *= n
        if size > MAX_VALUES:
            return None
    if size != len(values):
        return None
    floats = []
    for v in values:
        if type(v) is float:
            floats.append(v)
        elif type(v) is int and -2**1023 < v < 2**1023:
            floats.append(float(v))
        else:
            return None
    return tuple(shape), floats


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


def _close_message(golden: dict, student: dict, clean: Callable[[str], str]) -> str | None:
    """None when the student's value passes the golden check, else the teaching message."""
    name, hint = str(golden.get("name")), str(golden.get("hint", ""))
    expected = _values(golden.get("expected"))
    got = _values(student.get("got"))
    if expected is None:
        return f"{name}: the solution recorded no expected value (report this to the staff)"
    if got is None:
        kind = clean(str(student.get("got_type", "unknown"))[:60])
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


def _check_message(golden: dict, student: dict, clean: Callable[[str], str]) -> str | None:
    name = str(golden.get("name"))
    if student.get("kind") != golden.get("kind") or student.get("name") != golden.get("name"):
        return f"{name}: this check was not reached where expected (checks out of order)"
    kind = golden.get("kind")
    if kind == "close":
        return _close_message(golden, student, clean)
    if kind == "shape":
        if student.get("got") != golden.get("expected"):
            got = clean(str(student.get("got"))[:80])
            return (f"{name}: wrong shape: got {got}, expected {golden.get('expected')}."
                    f" HINT: {golden.get('hint', '')}")
        return None
    if kind == "true":
        return None if student.get("got") is True else f"{name}: HINT: {golden.get('hint', '')}"
    return f"{name}: unknown check kind {kind!r}"


def verdict(cell_id: str, max_score: float, error: tuple[str, str] | None,
            golden: list[dict], student: list[dict],
            clean: Callable[[str], str] = str) -> Verdict:
    """Points of one test cell: full when its journal lines match the golden ones one for one.

    ``error`` (the first error output of the executed cell, attacker-controlled) only explains a
    failure: it is quoted, through ``clean``, and never decides the points.
    """
    result = Verdict(cell_id, max_score, checks=len(golden))
    if not golden:          # nothing to compare with: no points (the template refuses this case)
        result.messages.append("this test cell records no check, so it cannot be graded")
        return result
    for index, expected in enumerate(golden):
        if index >= len(student):
            result.messages.append(f"{expected.get('name')}: not reached")
            break
        message = _check_message(expected, student[index], clean)
        if message is None:
            result.passed_checks += 1
        else:
            result.messages.append(message)
            break                       # later checks of the cell may depend on this one
    if len(student) > len(golden):
        result.messages.append("the cell recorded more checks than the test has")
    if not result.messages and result.passed_checks == len(golden):
        result.score = max_score
    elif error is not None:
        ename, evalue = error
        first = evalue.splitlines()[0] if evalue else ""
        if ename == "NotImplementedError" and not first:
            first = "the answer still raises NotImplementedError: replace that line with your code"
        result.messages.insert(0, clean(f"{ename}: {first}"[:500]))
    return result
