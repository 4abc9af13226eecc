"""A whole term: roster, due dates and late policy, autograde and manual scores, export, hand-back.

The term folder (``grading/`` by default, ``--term DIR``)::

    roster.csv                      student_id[, lms_name, lms_id, email, any other column]
    term.toml                       late policy and, per assignment, the due date (and extensions)
    <assignment>/submissions/<student_id>/   what ``collect`` copied (or you put there)
    <assignment>/timestamps.csv     when each was handed in (``collect``; correct it by hand)
    <assignment>/grades.csv, cells.csv, feedback/, autograded/   ``grade --term`` (merged)
    <assignment>/manual.csv         written answers' scores and comments (never overwritten)
    <assignment>/export.csv         ``export``: one row per roster student
    <assignment>/handback/<student_id>/<notebook>.html   ``feedback``: the pages to hand back
    export.csv                      ``export`` of several assignments: one total per assignment

The late penalty (``late_days``, ``penalty_percent``): a submission later than its due date plus
``grace_minutes`` is late by every started day (24 h) after the due date; it loses
``penalty_percent_per_day`` percent of the points it earned (autograded plus written answers) per
day, at most ``max_penalty_percent``. An LMS flat file's ``_LATE`` marker makes it at least one day
late, and a file the LMS did not mark counts as on time (a downloaded file's time may be the
download's), unless the student has an extension: then only the recorded time counts.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from . import feedback
from .lms import (Item, Roster, TermError, item_time, parse_time, read_roster, read_timestamps,
                  regular_files, write_csv)
from .manual import manual_cells, read_manual, read_rows
from .redact import csv_cell

try:
    import tomllib
except ModuleNotFoundError:      # Python 3.10: the lock (requirements/) is 3.11
    tomllib = None

DEFAULT_TERM = "grading"
POLICY_KEYS = ("penalty_percent_per_day", "max_penalty_percent", "grace_minutes")
EXPORT_COLUMNS = ["status", "auto_score", "auto_max", "manual_score", "manual_max",
                  "manual_pending", "submitted_at", "late_days", "penalty_percent",
                  "penalty_points", "total", "max_score"]


@dataclass(frozen=True)
class LatePolicy:
    penalty_percent_per_day: float = 0.0
    max_penalty_percent: float = 100.0
    grace_minutes: float = 0.0


@dataclass(frozen=True)
class Assignment:
    name: str
    due: datetime
    policy: LatePolicy
    extensions: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Term:
    folder: Path
    roster: Roster
    assignments: dict[str, Assignment]

    def assignment(self, name: str) -> Assignment:
        if name not in self.assignments:
            raise TermError(f"ASSIGNMENT {name!r} has no [assignments.{name}] table with a due "
                            f"date in {self.folder / 'term.toml'}")
        return self.assignments[name]


# --- term.toml ------------------------------------------------------------------------------------

def _policy(table: dict, base: LatePolicy, where: str) -> LatePolicy:
    values = {key: getattr(base, key) for key in POLICY_KEYS}
    for key in POLICY_KEYS:
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                    (key != "grace_minutes" and value > 100):
                raise TermError(f"{where}: {key} = {value!r}: expected a number"
                                + (" in 0..100 (percent)" if key != "grace_minutes" else " >= 0"))
            values[key] = float(value)
    return LatePolicy(**values)


def _due(value: object, where: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TermError(f"{where} = {value!r}: expected a date and time with a UTC offset, "
                        "unquoted, e.g. 2026-10-05T23:59:00+02:00")
    return value


def _check_keys(table: object, allowed: tuple[str, ...], where: str) -> None:
    if not isinstance(table, dict):
        raise TermError(f"{where}: expected a table ({{...}} or a [section]), got {table!r}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise TermError(f"{where}: unknown key(s) {', '.join(unknown)}; expected "
                        f"{', '.join(allowed)}")


def _assignment(name: str, table: object, roster: Roster, policy: LatePolicy,
                where: str) -> Assignment:
    """One ``[assignments.NAME]`` table: its due date, extensions and late policy."""
    _check_keys(table, ("due", "extensions") + POLICY_KEYS, where)
    if "due" not in table:
        raise TermError(f"{where}: no due date (due = 2026-10-05T23:59:00+02:00)")
    extensions = table.get("extensions", {})
    _check_keys(extensions, tuple(extensions) if isinstance(extensions, dict) else (),
                f"{where} extensions")
    strangers = sorted(set(extensions) - set(roster.ids))
    if strangers:
        raise TermError(f"{where}: extensions for {', '.join(strangers)}, not on the roster")
    return Assignment(name, _due(table["due"], f"{where} due"), _policy(table, policy, where),
                      {sid: _due(when, f"{where} extensions.{sid}")
                       for sid, when in extensions.items()})


def read_term(folder: Path) -> Term:
    """The term: ``roster.csv`` and ``term.toml``, both validated."""
    roster = read_roster(folder / "roster.csv")
    path = folder / "term.toml"
    if not path.is_file():
        raise TermError(f"{path} not found: it gives each assignment's due date "
                        "([assignments.NAME] due = 2026-10-05T23:59:00+02:00) and the late policy")
    if tomllib is None:
        raise TermError(f"{path}: reading it needs Python 3.11 or later (tomllib)")
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TermError(f"{path}: not valid TOML: {error}") from None
    _check_keys(config, ("late", "assignments"), str(path))
    _check_keys(config.get("late", {}), POLICY_KEYS, f"{path} [late]")
    policy = _policy(config.get("late", {}), LatePolicy(), f"{path} [late]")
    tables = config.get("assignments", {})
    _check_keys(tables, tuple(tables) if isinstance(tables, dict) else (), f"{path} [assignments]")
    return Term(folder, roster, {
        name: _assignment(name, table, roster, policy, f"{path} [assignments.{name}]")
        for name, table in tables.items()})


# --- the late penalty -----------------------------------------------------------------------------

def late_days(submitted: datetime | None, due: datetime, grace_minutes: float = 0.0) -> int:
    """Started days after ``due``; 0 when on time, within the grace period or never handed in."""
    if submitted is None or submitted - due <= timedelta(minutes=grace_minutes):
        return 0
    return math.ceil((submitted - due) / timedelta(days=1))


def penalty_percent(days: int, policy: LatePolicy) -> float:
    return min(days * policy.penalty_percent_per_day, policy.max_penalty_percent)


def days_late_of(assignment: Assignment, student_id: str, stamp: dict[str, str] | None) -> int:
    """Late days of one submission: its recorded time against the due date (the student's
    extension, if any), and the LMS's marker where there is one and no extension."""
    if not stamp:
        return 0
    submitted = parse_time(stamp["submitted_at"], "timestamps.csv") \
        if stamp.get("submitted_at") else None
    extension = assignment.extensions.get(student_id)
    days = late_days(submitted, extension or assignment.due, assignment.policy.grace_minutes)
    if extension is None and stamp.get("lms_marker") == "LATE":
        return max(days, 1)
    if extension is None and stamp.get("lms_marker") == "on time":
        return 0
    return days


# --- one student's standing -----------------------------------------------------------------------

@dataclass
class Standing:
    """One roster student's result on one assignment: the numbers of the export."""
    student_id: str
    status: str
    auto_score: float
    auto_max: float
    manual_score: float
    manual_max: float
    manual_pending: int
    submitted_at: str
    late_days: int
    penalty_percent: float
    comments: list[dict[str, str]] = field(default_factory=list)   # the manual.csv rows

    @property
    def earned(self) -> float:
        return self.auto_score + self.manual_score

    @property
    def penalty_points(self) -> float:
        return round(self.earned * self.penalty_percent / 100, 2)

    @property
    def total(self) -> float:
        return round(self.earned - self.penalty_points, 2)

    @property
    def max_score(self) -> float:
        return self.auto_max + self.manual_max

    def row(self) -> dict[str, str]:
        values = {name: getattr(self, name) for name in EXPORT_COLUMNS}
        return {k: f"{v:g}" if isinstance(v, (int, float)) else v for k, v in values.items()}


def standings(term: Term, name: str) -> list[Standing]:
    """Every roster student's standing on assignment ``name`` (graded at least once)."""
    assignment, base = term.assignment(name), term.folder / name
    graded = {r["student_id"]: r for r in read_rows(base / "grades.csv",
                                                    f"grade it first: grade {name} --term")}
    if not graded:
        raise TermError(f"{base / 'grades.csv'} has no row: grade {name} --term first")
    some = next(iter(graded.values()))
    auto_max, manual_max = float(some["max_score"]), float(some["manual_max_score"])
    cells = manual_cells(base)
    manual = read_manual(base / "manual.csv", cells, set(term.roster.ids) | set(graded))
    stamps = read_timestamps(base / "timestamps.csv")
    result = []
    for sid in term.roster.ids:
        mine = [r for r in manual if r["student_id"] == sid]
        row = graded.get(sid)
        status = row["status"] if row else \
            ("not graded" if (base / "submissions" / sid).is_dir() else "missing")
        stamp = _stamp(base, sid, stamps) if status != "missing" else None
        days = days_late_of(assignment, sid, stamp)
        result.append(Standing(
            sid, status, float(row["score"]) if row else 0.0, auto_max,
            sum(float(r["score"]) for r in mine if r["score"]), manual_max,
            sum(1 for r in mine if r["score"] == "") if row and status != "missing" else 0,
            _shown_time(stamp, assignment.due), days,
            penalty_percent(days, assignment.policy), mine))
    return result


def _stamp(base: Path, student_id: str, stamps: dict) -> dict[str, str] | None:
    """The student's row of timestamps.csv or, for a folder put there by hand, its
    timestamp.txt or newest file's time."""
    folder = base / "submissions" / student_id
    if student_id in stamps or not folder.is_dir() or folder.is_symlink():
        return stamps.get(student_id)
    moment, source, _ = item_time(Item(student_id, regular_files(folder)[0], student_id))
    return {"submitted_at": moment.isoformat() if moment else "", "source": source,
            "lms_marker": ""}


def _shown_time(stamp: dict[str, str] | None, due: datetime) -> str:
    """The recorded time in the due date's time zone (what the instructor compares)."""
    if not stamp or not stamp.get("submitted_at"):
        return ""
    return parse_time(stamp["submitted_at"], "timestamps.csv").astimezone(due.tzinfo).isoformat()


# --- export ---------------------------------------------------------------------------------------

def _roster_part(term: Term, student_id: str, taken: list[str]) -> dict[str, str]:
    """The student's roster columns for an export (spreadsheet-safe, as ``redact.csv_cell``)."""
    clash = sorted(set(term.roster.columns) & set(taken))
    if clash:
        raise TermError(f"{term.folder / 'roster.csv'}: column(s) {', '.join(clash)} clash with "
                        "the export's columns: rename them")
    row = next(r for r in term.roster.rows if r["student_id"] == student_id)
    return {k: csv_cell(v) for k, v in row.items()}


def export(term: Term, names: list[str]) -> int:
    """``<assignment>/export.csv`` for each name and, for several, ``export.csv`` of the term."""
    strangers: set[str] = set()
    per_assignment = {}
    for name in names:
        rows = standings(term, name)
        per_assignment[name] = {s.student_id: s for s in rows}
        graded = {r["student_id"] for r in read_rows(term.folder / name / "grades.csv", "")}
        strangers |= graded - set(term.roster.ids)
        table = [{**_roster_part(term, s.student_id, EXPORT_COLUMNS), **s.row()} for s in rows]
        write_csv(term.folder / name / "export.csv", term.roster.columns + EXPORT_COLUMNS, table)
        _report(term, name, rows)
    if len(names) > 1:
        columns = names + ["total", "max_score"]
        table = []
        for sid in term.roster.ids:
            mine = [per_assignment[n][sid] for n in names]
            table.append({**_roster_part(term, sid, columns),
                          **{n: f"{s.total:g}" for n, s in zip(names, mine)},
                          "total": f"{round(sum(s.total for s in mine), 2):g}",
                          "max_score": f"{sum(s.max_score for s in mine):g}"})
        write_csv(term.folder / "export.csv", term.roster.columns + columns, table)
        print(f"export: {term.folder / 'export.csv'}: {len(table)} student(s), {len(names)} "
              "assignment(s)")
    if strangers:
        print(f"export: WARNING: graded but not on the roster (not exported): "
              f"{', '.join(sorted(strangers))}")
    return 0


def _report(term: Term, name: str, rows: list[Standing]) -> None:
    statuses = [s.status for s in rows]
    pending = sum(s.manual_pending for s in rows)
    print(f"export: {term.folder / name / 'export.csv'}: {len(rows)} student(s) ("
          + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))) + ")"
          + f", {sum(1 for s in rows if s.late_days)} late")
    if pending:
        print(f"export: WARNING: {pending} written answer(s) not graded yet count 0 "
              f"(python -m autograder manual {name} lists them)")
    for standing in rows:
        if standing.status == "not graded":
            print(f"export: WARNING: {standing.student_id} has a submission that was never "
                  f"graded (grade {name} --term --only {standing.student_id})")


# --- hand-back pages ------------------------------------------------------------------------------

def _summary(standing: Standing) -> list[tuple[str, str]]:
    late = (f"{standing.late_days} day(s): -{standing.penalty_percent:g} % of the points earned "
            f"(-{standing.penalty_points:g})") if standing.late_days else "no"
    return [("Autograded", f"{standing.auto_score:g} / {standing.auto_max:g}"),
            ("Written answers", f"{standing.manual_score:g} / {standing.manual_max:g}"),
            ("Handed in", standing.submitted_at or "-"), ("Late", late),
            ("Total", f"{standing.total:g} / {standing.max_score:g}")]


def write_handback(term: Term, name: str) -> int:
    """``<assignment>/handback/<student_id>/<notebook>.html``: the autograded page with the
    written answers' points and comments and the total, for each roster student whose written
    answers are all graded; the others are listed (and any older page of theirs removed)."""
    base = term.folder / name
    notebooks = list(dict.fromkeys(r["notebook"] for r in read_rows(base / "cells.csv", "")))
    written, waiting = 0, []
    for standing in standings(term, name):
        folder = base / "handback" / standing.student_id
        shutil.rmtree(folder, ignore_errors=True)
        if standing.manual_pending or standing.status == "not graded":
            waiting.append(standing.student_id)
            continue
        folder.mkdir(parents=True)
        for notebook in notebooks:
            graded = base / "feedback" / standing.student_id / f"{notebook}.html"
            why = "nothing was handed in" if standing.status == "missing" else "no page found"
            page = graded.read_text(encoding="utf-8") if graded.is_file() else \
                feedback.status_page(standing.student_id, name, notebook, standing.status, why,
                                     standing.auto_score, standing.auto_max)
            answers = [r for r in standing.comments if r["notebook"] == notebook]
            part = feedback.manual_part(answers, _summary(standing))
            (folder / f"{notebook}.html").write_text(feedback.with_manual_part(page, part),
                                                     encoding="utf-8")
        written += 1
    print(f"feedback: {written} student(s) in {base / 'handback'}"
          + (f"; not yet (written answers to grade, or not graded): {', '.join(waiting)}"
             if waiting else ""))
    return 0
