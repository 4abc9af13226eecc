"""grades.csv and cells.csv: one row per student and one per graded cell, written by ``grade``
(merged with the rows already there when one student is regraded)."""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

from .redact import csv_cell, printable

GRADES_COLUMNS = ["student_id", "score", "max_score", "manual_max_score", "status", "detail",
                  "submitted"]
CELLS_COLUMNS = ["student_id", "notebook", "grade_id", "kind", "score", "max_score"]


@dataclass
class Result:
    """A student's row of grades.csv and rows of cells.csv."""
    row: dict[str, str]
    cells: list[dict[str, str]]
    seconds: float = 0.0


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Every cell through ``redact.csv_cell``: any file name, no formula, one line."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)


def _previous(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _kept(out: Path, results: list[Result]) -> list[Result]:
    """The rows of OUT's grades.csv and cells.csv of students not in ``results`` (--only)."""
    regraded = {csv_cell(r.row["student_id"]) for r in results}
    kept = {row["student_id"]: Result(row, []) for row in _previous(out / "grades.csv")
            if row["student_id"] not in regraded}
    for row in _previous(out / "cells.csv"):
        if row["student_id"] in kept:
            kept[row["student_id"]].cells.append(row)
    return list(kept.values())


def write_results(results: list[Result], out: Path, start: float, merge: bool = False) -> None:
    """grades.csv and cells.csv, one row per student in a stable order, and the closing line;
    with ``merge`` the rows of the students not graded now are kept."""
    graded = len(results)
    results = results + (_kept(out, results) if merge else [])
    results.sort(key=lambda r: printable(r.row["student_id"]))
    write_csv(out / "grades.csv", GRADES_COLUMNS, [r.row for r in results])
    write_csv(out / "cells.csv", CELLS_COLUMNS, [c for r in results for c in r.cells])
    statuses = [r.row["status"] for r in results]
    print(printable(f"grade: {len(results)} row(s) in {out / 'grades.csv'} (")
          + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
          + (f"; {graded} graded now, {len(results) - graded} kept" if merge else "")
          + f"), feedback in {printable(out / 'feedback')}, total {time.monotonic() - start:.1f} s")
