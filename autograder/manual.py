"""Written answers graded by hand: ``TERM/<assignment>/manual.csv``, which grading never overwrites.

After each ``grade --term`` run, ``prefill`` adds one row per graded student and written-answer
cell (``student_id, notebook, grade_id, score, max_score, comment``, the score empty) that is not
there yet; rows already there keep their score and comment, whatever the regrade gave. Scores are
entered with ``python -m autograder manual ASSIGNMENT STUDENT CELL SCORE [--comment TEXT]`` or by
editing the file (a column added by hand is kept). Every read validates the whole file
(``read_manual``): a known student, a known written-answer cell, one row per pair, the cell's
``max_score`` unchanged, a score that is empty or a number in ``[0, max_score]``; an error names
the file, the line and what was expected.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from .lms import TermError, checked_csv, write_csv
from .notebooks import grade_id, read_notebook
from .redact import printable

MANUAL_COLUMNS = ["student_id", "notebook", "grade_id", "score", "max_score", "comment"]
MAX_ERRORS = 20                                     # listed at once; the rest are counted
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ManualCell:
    notebook: str
    grade_id: str
    max_score: float


def read_rows(path: Path, what: str) -> list[dict[str, str]]:
    """A CSV file the pipeline wrote, or TermError saying which command writes it."""
    if not path.is_file():
        raise TermError(f"{path} not found: {what}")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def manual_cells(base: Path) -> list[ManualCell]:
    """The written-answer cells of an assignment, in notebook order, from the grader's cells.csv."""
    cells: dict[tuple[str, str], ManualCell] = {}
    for row in read_rows(base / "cells.csv", "grade the assignment first (grade --term)"):
        if row["kind"] == "manual":
            cells.setdefault((row["notebook"], row["grade_id"]),
                             ManualCell(row["notebook"], row["grade_id"], float(row["max_score"])))
    return list(cells.values())


def _score(text: str, cell: ManualCell) -> str | None:
    """Why ``text`` is not a score of ``cell``, or None."""
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return f"score {text!r} is not a number"
    if not math.isfinite(value) or not 0 <= value <= cell.max_score:
        return f"score {text!r} is not within 0..{cell.max_score:g} (the cell's max_score)"
    return None


def _row_problem(row: dict, cells: dict, students: set[str], seen: set) -> str | None:
    key = (row["notebook"], row["grade_id"])
    if row["student_id"] not in students:
        return f"student_id {row['student_id']!r} is neither on the roster nor graded"
    if key not in cells:
        known = ", ".join(f"{n}:{g}" for n, g in cells)
        return f"{row['notebook']}:{row['grade_id']} is not a written-answer cell (known: {known})"
    if (row["student_id"], *key) in seen:
        return "a second row for this student and cell"
    try:
        same = float(row["max_score"]) == cells[key].max_score
    except ValueError:
        same = False
    if not same:
        return f"max_score {row['max_score']!r} differs from the cell's {cells[key].max_score:g}"
    return _score(row["score"], cells[key])


def read_manual(path: Path, cells: list[ManualCell], students: set[str]) -> list[dict[str, str]]:
    """Every row of ``manual.csv``, validated; TermError lists each bad line."""
    if not path.is_file():
        return []
    by_key = {(c.notebook, c.grade_id): c for c in cells}
    rows, errors, seen = [], [], set()
    with checked_csv(path, MANUAL_COLUMNS) as reader:
        for raw in reader:
            row = {k: v or "" for k, v in raw.items() if k is not None}   # extra columns kept
            row.update({k: (raw.get(k) or "").strip() for k in MANUAL_COLUMNS if k != "comment"})
            problem = _row_problem(row, by_key, students, seen)
            if problem:
                errors.append(f"{path}: line {reader.line_num} ({row['student_id']}, "
                              f"{row['grade_id']}): {problem}")
            seen.add((row["student_id"], row["notebook"], row["grade_id"]))
            rows.append(row)
    if errors:
        more = f"\n... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise TermError("\n".join(errors[:MAX_ERRORS]) + more)
    return rows


def prefill(base: Path, students: set[str], graded: list[str]) -> int:
    """Add the empty rows of ``graded`` students; existing rows are kept as they are. Returns how
    many rows were added (the file is not rewritten when none is)."""
    cells = manual_cells(base)
    rows = read_manual(base / "manual.csv", cells, students)
    have = {(r["student_id"], r["notebook"], r["grade_id"]) for r in rows}
    added = [{"student_id": sid, "notebook": c.notebook, "grade_id": c.grade_id, "score": "",
              "max_score": f"{c.max_score:g}", "comment": ""}
             for sid in graded for c in cells if (sid, c.notebook, c.grade_id) not in have]
    if added or not (base / "manual.csv").exists():
        order = {(c.notebook, c.grade_id): i for i, c in enumerate(cells)}
        rows = sorted(rows + added,
                      key=lambda r: (r["student_id"], order[(r["notebook"], r["grade_id"])]))
        write_csv(base / "manual.csv", columns(rows), rows)
    return len(added)


def find_cell(cells: list[ManualCell], ref: str) -> ManualCell:
    """``grade_id`` or ``notebook:grade_id`` -> the cell; TermError naming the choices."""
    found = [c for c in cells if ref in (c.grade_id, f"{c.notebook}:{c.grade_id}")]
    if len(found) == 1:
        return found[0]
    choices = ", ".join(f"{c.notebook}:{c.grade_id}" for c in cells)
    raise TermError(f"CELL_ID {ref!r} " + ("names several cells" if found else "is not a "
                    "written-answer cell") + f": expected one of {choices}")


def set_score(base: Path, students: set[str], student: str, ref: str, score: str,
              comment: str | None) -> dict[str, str]:
    """Enter one score (and comment); the row must exist (the student was graded)."""
    cells = manual_cells(base)
    cell = find_cell(cells, ref)
    problem = _score(score.strip(), cell) if score.strip() else "score is empty"
    if problem:
        raise TermError(f"SCORE: {problem}")
    rows = read_manual(base / "manual.csv", cells, students)
    row = next((r for r in rows if (r["student_id"], r["notebook"], r["grade_id"])
                == (student, cell.notebook, cell.grade_id)), None)
    if row is None:
        raise TermError(f"STUDENT {student!r} has no row for {cell.grade_id} in "
                        f"{base / 'manual.csv'}: only graded students do (grade --term first)")
    row["score"] = f"{float(score):g}"
    if comment is not None:
        row["comment"] = comment
    write_csv(base / "manual.csv", columns(rows), rows)
    return row


def columns(rows: list[dict[str, str]]) -> list[str]:
    """``MANUAL_COLUMNS`` and then any column the instructor added (never dropped)."""
    extra = dict.fromkeys(k for row in rows for k in row if k not in MANUAL_COLUMNS)
    return MANUAL_COLUMNS + list(extra)


def pending(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["score"] == ""]


def terminal_text(text: str) -> str:
    """Student text made safe to print: no terminal escape or control characters."""
    return _CONTROL.sub("?", printable(text))


def answers_of(base: Path, student: str, cells: list[ManualCell]) -> dict[str, str]:
    """``notebook:grade_id`` -> the student's written answer, read from the executed notebook
    in ``autograded/`` (the graded copy: cell identities are the grader's own)."""
    texts = {}
    for notebook in dict.fromkeys(c.notebook for c in cells):
        path = base / "autograded" / student / f"{notebook}.ipynb"
        nb: NotebookNode | None = read_notebook(path) if path.is_file() else None
        ids = {c.grade_id for c in cells if c.notebook == notebook}
        for cell in nb.cells if nb is not None else []:
            if grade_id(cell) in ids and cell.cell_type == "markdown":
                texts[f"{notebook}:{grade_id(cell)}"] = terminal_text(cell.source)
    return texts
