"""``collect``: an LMS download or nbgrader folders -> ``TERM/<assignment>/submissions/<id>/``.

What a download may hold, each item mapped to a student of ``TERM/roster.csv``:

- flat files named ``<lmsname>[_LATE]_<digits>_<digits>_<original name>`` (Canvas "download
  all", e.g. ``smithjane_LATE_12345_67890_dino.ipynb``; the first number is the LMS's user id,
  matched against the roster's optional ``lms_id`` column before any name) or Moodle's older
  ``Jane Smith_123_assignsubmission_file_dino.ipynb``;
- a folder per student (``<name>/`` or nbgrader's ``<student_id>/<assignment>/``, or Moodle's
  ``Jane Smith_123_assignsubmission_file_/``), holding the notebooks and, when nbgrader collected
  it, a ``timestamp.txt``.

A name is matched, lower-cased and stripped of everything but letters and digits, against the
roster's ``lms_name``, ``student_id``, ``email`` and the email's local part; it must single out one
student. Whatever cannot be mapped (no roster match, two matches, not a regular file, too large,
two files of the same name for one student) is printed with the reason and makes ``collect`` exit
1: nothing is dropped silently, except hidden files and ``__MACOSX``, which the grader skips too.
Files are copied without following links, and a student's folder is replaced as a whole, so
collecting a new download of one student leaves the others alone.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .redact import printable
from .submissions import HIDDEN_PREFIXES, MAX_NOTEBOOK_BYTES

ROSTER_COLUMNS = ("student_id", "lms_name", "lms_id", "email")
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
FLAT_NAME = re.compile(r"(?P<name>.+?)(?P<late>_late)?_(?P<lms_id>\d+)_(?P<number>\d+)_"
                       r"(?P<original>.+)", re.IGNORECASE)
MOODLE_FOLDER = re.compile(r"(?P<name>.+?)_\d+_assignsubmission_\w*", re.IGNORECASE)
MOODLE_FLAT = re.compile(r"(?P<name>.+?)_\d+_assignsubmission_file_(?P<original>.+)",
                         re.IGNORECASE)
TIMESTAMP_FILE = "timestamp.txt"
TIMESTAMP_COLUMNS = ["student_id", "submitted_at", "source", "lms_marker", "files"]
RESUBMISSION = re.compile(r"-\d+(?=\.[^.]+$)")         # Canvas's 'dino-1.ipynb' for a second try


class TermError(ValueError):
    """Bad input in a term file or argument; the message names the file, line and expectation."""


@dataclass(frozen=True)
class Roster:
    columns: list[str]
    rows: list[dict[str, str]]

    @property
    def ids(self) -> list[str]:
        return [row["student_id"] for row in self.rows]


@dataclass
class Item:
    """One thing found in a download: the files it holds and what its name says."""
    label: str                         # as printed: the path relative to the download
    files: list[Path]
    name: str                          # the student name part, to be matched
    lms_id: str = ""
    lms_marker: str = ""               # "LATE", "on time" (an LMS flat file) or ""
    rename: dict[Path, str] = field(default_factory=dict)


# --- the roster -----------------------------------------------------------------------------------

def read_roster(path: Path) -> Roster:
    """``roster.csv``: a ``student_id`` column (unique folder names), optionally ``lms_name``,
    ``lms_id``, ``email`` and any other columns (kept in the export)."""
    if not path.is_file():
        raise TermError(f"{path} not found: write a CSV with a student_id column (optional: "
                        "lms_name, lms_id, email)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "student_id" not in columns:
            raise TermError(f"{path}: line 1 must name the columns, one of them student_id; got "
                            f"{columns or 'nothing'}")
        rows, seen = [], {"student_id": {}, "lms_id": {}}
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            where = f"{path}: line {reader.line_num}"
            sid = row["student_id"]
            if not STUDENT_ID.fullmatch(sid):
                raise TermError(f"{where}: student_id {sid!r} is not a folder name: expected "
                                "letters, digits and . _ @ + - (not starting with . or -)")
            for key in ("student_id", "lms_id"):
                if row.get(key) and row[key] in seen[key]:
                    raise TermError(f"{where}: {key} {row[key]!r} is already on line "
                                    f"{seen[key][row[key]]}")
                if row.get(key):
                    seen[key][row[key]] = reader.line_num
            rows.append(row)
    return Roster(columns, rows)


def name_key(text: str) -> str:
    """'Smith, Jane' and 'smithjane' alike: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def match_student(roster: Roster, name: str, lms_id: str = "") -> tuple[str | None, str]:
    """(student_id, "") or (None, why not) for a name and LMS user id found in a download."""
    if lms_id:
        by_id = [r["student_id"] for r in roster.rows if r.get("lms_id") == lms_id]
        if by_id:
            return by_id[0], ""
    key = name_key(name)
    found = []
    for row in roster.rows:
        email = row.get("email", "")
        keys = {name_key(row.get("lms_name", "")), name_key(row["student_id"]), name_key(email),
                name_key(email.split("@")[0])} - {""}
        if key and key in keys:
            found.append(row["student_id"])
    if len(found) == 1:
        return found[0], ""
    if found:
        return None, (f"'{printable(name)}' matches {', '.join(found)} on the roster: give them "
                      "distinct lms_name or lms_id values")
    return None, (f"no roster row has lms_name, student_id or email '{printable(name)}'"
                  + (f" (or lms_id {lms_id})" if lms_id else ""))


# --- what a download holds ------------------------------------------------------------------------

def parse_flat_name(filename: str) -> dict[str, str] | None:
    """``smithjane_LATE_12345_67890_Copy of dino-1.ipynb`` -> name, late marker, LMS user id and
    the original file name (Canvas's '-1' of a resubmission undone); Moodle's older
    ``Jane Smith_123_assignsubmission_file_dino.ipynb`` (no marker, no user id); else None."""
    moodle = MOODLE_FLAT.fullmatch(filename)
    if moodle is not None:
        return {"name": moodle["name"], "lms_marker": "", "lms_id": "",
                "original": moodle["original"]}
    match = FLAT_NAME.fullmatch(filename)
    if match is None or match["original"] in (".", ".."):
        return None
    return {"name": match["name"], "lms_marker": "LATE" if match["late"] else "on time",
            "lms_id": match["lms_id"], "original": RESUBMISSION.sub("", match["original"])}


def regular_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Regular files under ``folder`` (links never followed), and what was refused, with why."""
    found, refused = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(HIDDEN_PREFIXES))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(HIDDEN_PREFIXES):
                continue
            if not stat.S_ISREG(os.lstat(path).st_mode):
                refused.append(f"{printable(path)}: a link or special file, not copied")
            else:
                found.append(path)
    return found, refused


def scan_download(download: Path, assignment: str) -> tuple[list[Item], list[str]]:
    """The items of a download folder, and the files that fit no known layout (with why)."""
    items, problems = [], []
    for entry in sorted(download.iterdir()):
        if entry.name.startswith(HIDDEN_PREFIXES):
            continue
        mode = os.lstat(entry).st_mode
        if stat.S_ISDIR(mode):
            nested = entry / assignment                      # nbgrader's submitted/ layout
            inner = nested if nested.is_dir() and not nested.is_symlink() else entry
            files, refused = regular_files(inner)
            problems += refused
            moodle = MOODLE_FOLDER.fullmatch(entry.name)
            items.append(Item(f"{entry.name}/", files, moodle["name"] if moodle else entry.name))
        elif not stat.S_ISREG(mode):
            problems.append(f"{printable(entry)}: a link or special file, not copied")
        elif (flat := parse_flat_name(entry.name)) is None:
            problems.append(f"{printable(entry)}: not a folder and not named "
                            "<lmsname>[_LATE]_<digits>_<digits>_<file name>")
        else:
            items.append(Item(entry.name, [entry], flat["name"], flat["lms_id"],
                              flat["lms_marker"], {entry: flat["original"]}))
    return items, problems


# --- when it was handed in ------------------------------------------------------------------------

def parse_time(text: str, where: str) -> datetime:
    """An ISO 8601 time with a UTC offset, or nbgrader's ``2026-10-05 21:30:00.123456 UTC``; a
    time with no zone is UTC, as nbgrader reads it. Raises TermError naming ``where``."""
    value = text.strip()
    value = re.sub(r"\s*(UTC|GMT|Z)$", "+00:00", value, flags=re.IGNORECASE)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TermError(f"{where}: {text.strip()!r} is not a time: expected ISO 8601 with a UTC "
                        "offset (2026-10-05T23:59:00+02:00) or nbgrader's "
                        "'2026-10-05 21:59:00.000000 UTC'") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def file_time(paths: list[Path]) -> datetime | None:
    """The newest modification time of ``paths`` (links not followed), in UTC."""
    times = [os.lstat(p).st_mtime for p in paths]
    return datetime.fromtimestamp(max(times), timezone.utc) if times else None


def item_time(item: Item) -> tuple[datetime | None, str, str]:
    """(submission time, where it came from, a note): nbgrader's timestamp.txt, else the newest
    file's modification time (also when timestamp.txt cannot be read, which the note says)."""
    stamps = [p for p in item.files if p.name == TIMESTAMP_FILE]
    note = ""
    if stamps:
        try:
            fd = os.open(stamps[0], os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                text = handle.read(200).decode("utf-8", errors="replace")
            return parse_time(text, printable(stamps[0])), TIMESTAMP_FILE, ""
        except TermError as error:
            note = f"{error}; used the file time instead"
    return file_time([p for p in item.files if p.name != TIMESTAMP_FILE]), "file time", note


@contextmanager
def checked_csv(path: Path, columns) -> Iterator[csv.DictReader]:
    """A ``csv.DictReader`` over ``path`` whose header holds every one of ``columns``; TermError
    naming the missing ones otherwise."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = set(columns) - set(reader.fieldnames or [])
        if missing:
            raise TermError(f"{path}: line 1 lacks the column(s) {', '.join(sorted(missing))}; "
                            f"expected {', '.join(columns)}")
        yield reader


def read_timestamps(path: Path) -> dict[str, dict[str, str]]:
    """``timestamps.csv`` (written by ``collect``, correctable by hand): student -> row, each
    ``submitted_at`` checked to be a time."""
    if not path.is_file():
        return {}
    rows = {}
    with checked_csv(path, TIMESTAMP_COLUMNS) as reader:
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if row["submitted_at"]:
                parse_time(row["submitted_at"], where)
            if row["lms_marker"] not in ("", "LATE", "on time"):
                raise TermError(f"{where}: lms_marker {row['lms_marker']!r} is not one of '', "
                                "'LATE', 'on time'")
            rows[row["student_id"]] = {k: row[k] or "" for k in TIMESTAMP_COLUMNS}
    return rows


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write through a temporary file and a rename: a crash never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in columns} for row in rows)
    os.replace(partial, path)


# --- collect --------------------------------------------------------------------------------------

def _copy_into(items: list[Item], folder: Path) -> list[str]:
    """Copy the items' files (not timestamp.txt) into a fresh ``folder``; problems, with why."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    problems = []
    for item in items:
        for path in item.files:
            name = item.rename.get(path, path.name)
            if path.name == TIMESTAMP_FILE:
                continue
            if (folder / name).exists():
                problems.append(f"{printable(path)}: a second file named '{printable(name)}' for "
                                f"{folder.name}, not copied")
            elif os.lstat(path).st_size > MAX_NOTEBOOK_BYTES:
                problems.append(f"{printable(path)}: larger than "
                                f"{MAX_NOTEBOOK_BYTES >> 20} MB, not copied")
            else:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as source, open(folder / name, "wb") as copy:
                    shutil.copyfileobj(source, copy)
                moment = os.lstat(path).st_mtime
                os.utime(folder / name, (moment, moment))
    return problems


def _stamp_row(student_id: str, items: list[Item]) -> tuple[dict[str, str], list[str]]:
    """The student's timestamps.csv row (the latest of their items) and notes on it."""
    times, notes = [], []
    for item in items:
        moment, source, note = item_time(item)
        notes += [note] if note else []
        if moment is not None:
            times.append((moment, source))
    markers = [item.lms_marker for item in items if item.lms_marker]
    moment, source = max(times) if times else (None, "")
    marker = "LATE" if "LATE" in markers else ("on time" if markers else "")
    row = {"student_id": student_id, "submitted_at": moment.isoformat() if moment else "",
           "source": source, "lms_marker": marker,
           "files": " | ".join(printable(item.label) for item in items)}
    return row, notes


def collect(term: Path, assignment: str, download: Path) -> int:
    """Map a download onto ``TERM/<assignment>/submissions/<student_id>/`` and record when each
    was handed in (``timestamps.csv``); 1 when anything could not be mapped or copied."""
    if not download.is_dir():
        raise TermError(f"DOWNLOAD_DIR {download} is not a folder: unzip the LMS download first")
    roster = read_roster(term / "roster.csv")
    items, problems = scan_download(download, assignment)
    by_student: dict[str, list[Item]] = {}
    for item in items:
        student_id, why = match_student(roster, item.name, item.lms_id)
        if student_id is None:
            problems.append(f"{printable(item.label)}: {why}")
        elif not [p for p in item.files if p.name != TIMESTAMP_FILE]:
            problems.append(f"{printable(item.label)}: holds no file to collect")
        else:
            by_student.setdefault(student_id, []).append(item)
    base = term / assignment
    stamps = read_timestamps(base / "timestamps.csv")
    base.mkdir(parents=True, exist_ok=True)
    for student_id, group in sorted(by_student.items()):
        problems += _copy_into(group, base / "submissions" / student_id)
        stamps[student_id], notes = _stamp_row(student_id, group)
        row = stamps[student_id]
        marker = f", LMS: {row['lms_marker']}" if row["lms_marker"] else ""
        print(printable(f"collect: {student_id:<16} <- {row['files']}  ({row['source']} "
                        f"{row['submitted_at']}{marker})"))
        for note in notes:
            print(printable(f"collect: {student_id}: {note}"))
    write_csv(base / "timestamps.csv", TIMESTAMP_COLUMNS, [stamps[k] for k in sorted(stamps)])
    for problem in problems:
        print(printable(f"collect: NOT COLLECTED {problem}"))
    absent = [sid for sid in roster.ids if not (base / "submissions" / sid).is_dir()]
    print(f"collect: {len(by_student)} student(s) into {base / 'submissions'}, "
          f"{len(problems)} file(s) not collected; {len(absent)} roster student(s) have no "
          f"submission" + (f" ({', '.join(absent)})" if absent else ""))
    return 1 if problems else 0
