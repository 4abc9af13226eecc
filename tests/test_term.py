"""The instructor's term (autograder/term.py, lms.py, manual.py, term_cli.py).

The walk-through grades the committed release of 01_infonce for a roster of five: alice (the
solution, on time), bob (the unmodified release, then a resubmission whose last answer raises),
carol (the solution, marked late by the LMS, 26 hours after the due date), dave (a cut-off
download, in an nbgrader folder with its timestamp.txt) and erin (nothing handed in). It collects
an LMS download, grades the batch once and bob once more (``--only``), grades the written
answers, exports and writes the hand-back pages; every exported number is checked against the
arithmetic written out below. The other tests need no grading: LMS names, the late penalty, and
the files a person edits (roster, term.toml, manual.csv).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from autograder.__main__ import main
from autograder.lms import (TermError, match_student, parse_flat_name, parse_time,
                            read_roster)
from autograder.manual import ManualCell, prefill, read_manual, set_score
from autograder.notebooks import grade_id, is_grade, is_solution, is_test, read_notebook
from autograder.samples import build_samples
from autograder.term import (Assignment, LatePolicy, days_late_of, late_days, penalty_percent,
                             read_term, standings)
from test_autograder import autograder as run_autograder, read_csv

REPO = Path(__file__).resolve().parents[1]
# The walk-through grades 4 submissions, then one again, and builds the template (release and
# solution runs) for each of the two runs: 60 to 75 s measured on two cores shared with other jobs.
SLOW = pytest.mark.slow
ASSIGNMENT = "01_infonce"
DUE = datetime(2026, 10, 5, 23, 59, tzinfo=timezone(timedelta(hours=2)))
TERM_TOML = f"""
[late]
penalty_percent_per_day = 10
max_penalty_percent = 30
grace_minutes = 10

[assignments.{ASSIGNMENT}]
due = {DUE.isoformat()}
"""
ROSTER = """student_id,lms_name,lms_id,email,section
alice,smithalice,,alice@uni.example,A
bob,,102,bob@uni.example,B
carol,whitecarol,,carol@uni.example,A
dave,,,dave@uni.example,B
erin,Erin Black,,erin@uni.example,A
"""


def cli(*args: str) -> tuple[int, str]:
    """``python -m autograder`` in this process: exit status, stdout and stderr together."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["--root", str(REPO), *args])
    return code, out.getvalue()


def put(path: Path, data: bytes, when: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))


def new_term(tmp: Path) -> Path:
    term = tmp / "term"
    term.mkdir()
    (term / "roster.csv").write_text(ROSTER)
    (term / "term.toml").write_text(TERM_TOML)
    return term


# --- the walk-through -----------------------------------------------------------------------------

def _samples() -> tuple[dict, dict]:
    """Submissions built from the committed release (exercises/) and the source (solutions/)."""
    release = {"infonce": read_notebook(REPO / "exercises" / ASSIGNMENT / "infonce.ipynb")}
    source = {"infonce": read_notebook(REPO / "solutions" / ASSIGNMENT / "infonce.ipynb")}
    return build_samples(release, source)


def _download(tmp: Path, samples: dict) -> Path:
    """An LMS download: three flat files, one nbgrader folder, two things nobody can map."""
    down = tmp / "download"
    put(down / "smithalice_101_5001_infonce.ipynb", samples["solution"]["infonce.ipynb"],
        DUE - timedelta(hours=1))
    put(down / "jonesbob_102_5002_Copy of infonce.ipynb",
        samples["release_unmodified"]["infonce.ipynb"], DUE - timedelta(days=2))
    put(down / "whitecarol_LATE_103_5003_infonce-1.ipynb", samples["solution"]["infonce.ipynb"],
        DUE + timedelta(hours=26))
    put(down / "dave" / ASSIGNMENT / "infonce.ipynb", samples["corrupt"]["infonce.ipynb"],
        DUE + timedelta(days=3))                   # the file time loses to timestamp.txt
    put(down / "dave" / ASSIGNMENT / "timestamp.txt", b"2026-10-05 20:00:00.000000 UTC\n", DUE)
    put(down / "someoneelse_999_5009_infonce.ipynb", b"{}", DUE)
    put(down / "README.txt", b"exported by the LMS\n", DUE)
    return down


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The term from collect to hand-back, run once; what each step returned and printed."""
    start = time.monotonic()
    tmp = tmp_path_factory.mktemp("term")
    term, (samples, expected) = new_term(tmp), _samples()
    base = term / ASSIGNMENT
    steps = {"collect": cli("collect", ASSIGNMENT, str(_download(tmp, samples)), "--term",
                            str(term))}
    steps["grade"] = run_autograder("grade", ASSIGNMENT, "--term", str(term), "--workers", "2",
                                    "--cell-timeout", "30", "--timeout", "300", root=REPO)
    steps["pending"] = cli("manual", ASSIGNMENT, "--term", str(term))
    for student, cell, score, comment in [
            ("alice", "answer_small_batches", "2", "Right: fewer negatives, a coarser estimate."),
            ("alice", "answer_moco_queue", "1.5", "The queue's keys come from older encoders."),
            ("bob", "answer_small_batches", "0.5", "Only half of the argument."),
            ("carol", "infonce:answer_small_batches", "2", ""),
            ("carol", "answer_moco_queue", "2", "")]:
        steps[f"{student} {cell}"] = cli("manual", ASSIGNMENT, student, cell, score, "--comment",
                                         comment, "--term", str(term))
    _edit_manual(base / "manual.csv", {("bob", "answer_moco_queue"): ("1", ""),
                                       ("dave", "answer_small_batches"): ("0", "unreadable"),
                                       ("dave", "answer_moco_queue"): ("0", "unreadable")})
    steps["before"] = {"grades": (base / "grades.csv").read_text().splitlines(),
                       "manual": (base / "manual.csv").read_bytes()}
    put(tmp / "again" / "jonesbob_102_5002_infonce.ipynb", samples["raises"]["infonce.ipynb"],
        DUE - timedelta(hours=3))
    steps["recollect"] = cli("collect", ASSIGNMENT, str(tmp / "again"), "--term", str(term))
    steps["regrade"] = run_autograder("grade", ASSIGNMENT, "--term", str(term), "--only", "bob",
                                      "--cell-timeout", "30", "--timeout", "300", root=REPO)
    steps["export"] = cli("export", "--term", str(term))
    steps["feedback"] = cli("feedback", ASSIGNMENT, "--term", str(term))
    seconds = time.monotonic() - start
    print(f"\nthe term walk-through took {seconds:.1f} s")
    return {"term": term, "base": base, "steps": steps, "expected": expected,
            "seconds": seconds}


def _edit_manual(path: Path, scores: dict) -> None:
    """What an instructor does in a spreadsheet: fill in score and comment of some rows."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["score"], row["comment"] = scores.get((row["student_id"], row["grade_id"]),
                                                  (row["score"], row["comment"]))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@SLOW
def test_collect_maps_the_download_and_reports_what_it_cannot(walk):
    code, out = walk["steps"]["collect"]
    assert code == 1, out                        # two things could not be mapped
    assert "NOT COLLECTED" in out and "someoneelse_999_5009_infonce.ipynb" in out, out
    assert "README.txt" in out and "no roster row" in out
    subs = walk["base"] / "submissions"
    assert sorted(p.name for p in subs.iterdir()) == ["alice", "bob", "carol", "dave"]
    assert [p.name for p in (subs / "carol").iterdir()] == ["infonce.ipynb"]   # '-1' undone
    stamps = {r["student_id"]: r for r in read_csv(walk["base"] / "timestamps.csv")}
    assert stamps["carol"]["lms_marker"] == "LATE" and stamps["alice"]["lms_marker"] == "on time"
    assert parse_time(stamps["carol"]["submitted_at"], "") == DUE + timedelta(hours=26)
    assert (stamps["dave"]["source"], stamps["dave"]["lms_marker"]) == ("timestamp.txt", "")
    assert parse_time(stamps["dave"]["submitted_at"], "") == \
        datetime(2026, 10, 5, 20, 0, tzinfo=timezone.utc)
    assert "erin" in out.splitlines()[-1]        # on the roster, nothing handed in


@SLOW
def test_grading_prefills_one_manual_row_per_student_and_written_answer(walk):
    assert walk["steps"]["grade"].returncode == 0, walk["steps"]["grade"].stdout
    code, out = walk["steps"]["pending"]
    assert code == 0 and "0 of 8 written answer(s) graded" in out, out
    for student in ("alice", "bob", "carol", "dave"):        # dave's notebook is broken: a row
        assert out.count(student) == 2, out
    assert "erin" not in out


@SLOW
def test_regrading_one_student_keeps_the_others_rows_and_every_manual_score(walk):
    assert walk["steps"]["recollect"][0] == 0, walk["steps"]["recollect"][1]
    assert walk["steps"]["regrade"].returncode == 0, walk["steps"]["regrade"].stdout
    assert "1 graded now, 3 kept" in walk["steps"]["regrade"].stdout
    before = walk["steps"]["before"]
    after = (walk["base"] / "grades.csv").read_text().splitlines()
    assert [line for line in after if not line.startswith("bob,")] == \
        [line for line in before["grades"] if not line.startswith("bob,")]
    assert (walk["base"] / "manual.csv").read_bytes() == before["manual"]
    bob = {r["student_id"]: r for r in read_csv(walk["base"] / "grades.csv")}["bob"]
    assert (bob["score"], bob["status"]) == ("11", "ok")      # 13 less test_uniformity's 2
    assert walk["expected"]["raises"]["zero"] == ["test_uniformity"]


def test_the_assignment_is_worth_13_autograded_and_4_written_points():
    """The hand computation below assumes these points; this says so if the notebook changes."""
    cells = read_notebook(REPO / "solutions" / ASSIGNMENT / "infonce.ipynb").cells
    points = {grade_id(c): c.metadata.nbgrader["points"] for c in cells if is_grade(c)}
    assert sum(points[grade_id(c)] for c in cells if is_test(c)) == 13
    assert {grade_id(c): points[grade_id(c)] for c in cells if is_grade(c) and is_solution(c)} \
        == {"answer_small_batches": 2, "answer_moco_queue": 2}
    assert points["test_uniformity"] == 2


# Worked out by hand: points earned = autograded + written; carol handed in 26 h after the due
# date: 2 started days, 10 % a day = 20 % of her 13 + 4 = 17 points = 3.4, total 13.6.
EXPECTED = {
    "alice": dict(status="ok", auto_score="13", manual_score="3.5", manual_pending="0",
                  late_days="0", penalty_percent="0", penalty_points="0", total="16.5"),
    "bob": dict(status="ok", auto_score="11", manual_score="1.5", manual_pending="0",
                late_days="0", penalty_percent="0", penalty_points="0", total="12.5"),
    "carol": dict(status="ok", auto_score="13", manual_score="4", manual_pending="0",
                  late_days="2", penalty_percent="20", penalty_points="3.4", total="13.6"),
    "dave": dict(status="error", auto_score="0", manual_score="0", manual_pending="0",
                 late_days="0", penalty_percent="0", penalty_points="0", total="0"),
    "erin": dict(status="missing", auto_score="0", manual_score="0", manual_pending="0",
                 late_days="0", penalty_percent="0", penalty_points="0", total="0"),
}


@SLOW
def test_export_has_every_roster_student_and_the_hand_computed_numbers(walk):
    code, out = walk["steps"]["export"]
    assert code == 0, out
    rows = read_csv(walk["base"] / "export.csv")
    assert [r["student_id"] for r in rows] == ["alice", "bob", "carol", "dave", "erin"]
    for row in rows:
        want = dict(EXPECTED[row["student_id"]], auto_max="13", manual_max="4", max_score="17")
        assert {k: row[k] for k in want} == want, row
        assert row["section"] and row["email"].startswith(row["student_id"])  # roster columns
    submitted = {r["student_id"]: r["submitted_at"] for r in rows}
    assert submitted["carol"] == "2026-10-07T01:59:00+02:00"    # the due date's time zone
    assert submitted["dave"] == "2026-10-05T22:00:00+02:00" and submitted["erin"] == ""


@SLOW
def test_feedback_pages_carry_the_written_answers_and_the_total(walk):
    code, out = walk["steps"]["feedback"]
    assert code == 0 and "5 student(s)" in out, out
    pages = {s: (walk["base"] / "handback" / s / "infonce.html").read_text()
             for s in EXPECTED}
    assert "fewer negatives, a coarser estimate." in pages["alice"]
    assert "1.5 / 2" in pages["alice"] and "16.5 / 17" in pages["alice"]
    assert "Autograded score: 13 / 13" in pages["alice"]            # the autograded page below
    assert "2 day(s): -20 % of the points earned (-3.4)" in pages["carol"]
    assert "13.6 / 17" in pages["carol"]
    assert "unreadable" in pages["dave"] and "could not run your notebook" in pages["dave"]
    assert "Status: missing" in pages["erin"] and "0 / 17" in pages["erin"]
    for page in pages.values():
        assert "Written answers (graded by hand)" in page


@SLOW
def test_the_walk_through_takes_about_a_minute(walk):
    assert walk["seconds"] < 180, walk["seconds"]


# --- LMS names and collect (no grading) -----------------------------------------------------------

@pytest.mark.parametrize("filename, name, marker, lms_id, original", [
    ("smithjane_12345_67890_dino.ipynb", "smithjane", "on time", "12345", "dino.ipynb"),
    ("smithjane_LATE_12345_67890_dino.ipynb", "smithjane", "LATE", "12345", "dino.ipynb"),
    ("smith_jane_late_7_8_Copy of dino-1.ipynb", "smith_jane", "LATE", "7", "Copy of dino.ipynb"),
    ("smithjane_1_2_3_notes.ipynb", "smithjane", "on time", "1", "3_notes.ipynb"),
    ("Jane Smith_4711_assignsubmission_file_dino.ipynb", "Jane Smith", "", "", "dino.ipynb"),
])
def test_lms_flat_names_are_split(filename, name, marker, lms_id, original):
    assert parse_flat_name(filename) == {"name": name, "lms_marker": marker, "lms_id": lms_id,
                                         "original": original}


@pytest.mark.parametrize("filename", ["dino.ipynb", "smithjane_12_dino.ipynb",
                                      "smithjane_x_12_dino.ipynb", "_12_34_dino.ipynb",
                                      "smithjane_12_34_.."])
def test_other_names_are_not_lms_flat_names(filename):
    assert parse_flat_name(filename) is None


def test_names_map_to_roster_students(tmp_path):
    (tmp_path / "roster.csv").write_text(
        "student_id,lms_name,lms_id,email\njs1,Smith Jane,,jane.smith@uni.example\n"
        "js2,smithjane,77,\nbo,,,bo@uni.example\n")
    roster = read_roster(tmp_path / "roster.csv")
    assert match_student(roster, "smithjane", "77") == ("js2", "")     # the LMS id decides
    assert match_student(roster, "JS1") == ("js1", "")                  # the student id
    assert match_student(roster, "janesmith") == ("js1", "")            # the email's local part
    assert match_student(roster, "bo") == ("bo", "")
    student, why = match_student(roster, "Smith, Jane", "5")
    assert student is None and "js1, js2" in why                        # two rows: say so
    student, why = match_student(roster, "nobody", "5")
    assert student is None and "no roster row" in why and "lms_id 5" in why


def test_collect_copies_records_times_and_leaves_other_students_alone(tmp_path):
    term = new_term(tmp_path)
    down = tmp_path / "down"
    put(down / "smithalice_1_2_infonce.ipynb", b"alice", DUE - timedelta(days=1))
    put(down / "Erin Black_55_assignsubmission_file_" / "infonce.ipynb", b"erin", DUE)
    put(down / "carol" / "infonce.ipynb", b"carol", DUE + timedelta(hours=5))
    (down / "carol" / "link.ipynb").symlink_to(down / "carol" / "infonce.ipynb")
    code, out = cli("collect", ASSIGNMENT, str(down), "--term", str(term))
    assert code == 1 and "link.ipynb: a link or special file, not copied" in out, out
    subs = term / ASSIGNMENT / "submissions"
    assert (subs / "alice" / "infonce.ipynb").read_bytes() == b"alice"
    assert (subs / "erin" / "infonce.ipynb").read_bytes() == b"erin"     # Moodle folder name
    assert sorted(p.name for p in (subs / "carol").iterdir()) == ["infonce.ipynb"]
    stamps = {r["student_id"]: r for r in read_csv(term / ASSIGNMENT / "timestamps.csv")}
    assert (stamps["carol"]["source"], stamps["carol"]["lms_marker"]) == ("file time", "")
    assert parse_time(stamps["carol"]["submitted_at"], "") == DUE + timedelta(hours=5)
    put(tmp_path / "again" / "smithalice_1_3_infonce.ipynb", b"alice 2", DUE)
    assert cli("collect", ASSIGNMENT, str(tmp_path / "again"), "--term", str(term))[0] == 0
    assert (subs / "alice" / "infonce.ipynb").read_bytes() == b"alice 2"
    assert (subs / "carol" / "infonce.ipynb").read_bytes() == b"carol"
    again = {r["student_id"]: r for r in read_csv(term / ASSIGNMENT / "timestamps.csv")}
    assert again["carol"] == stamps["carol"] and again["alice"] != stamps["alice"]


def test_times_in_nbgrader_and_iso_forms_are_read():
    utc = datetime(2026, 10, 5, 21, 30, tzinfo=timezone.utc)
    assert parse_time("2026-10-05 21:30:00.000000 UTC", "x") == utc
    assert parse_time("2026-10-05T23:30:00+02:00", "x") == utc
    assert parse_time("2026-10-05T21:30:00Z", "x") == utc
    assert parse_time("2026-10-05 21:30:00", "x") == utc                  # no zone: UTC
    with pytest.raises(TermError, match=r"dave/timestamp.txt: 'yesterday' is not a time"):
        parse_time("yesterday", "dave/timestamp.txt")


# --- the late penalty -----------------------------------------------------------------------------

POLICY = LatePolicy(penalty_percent_per_day=10, max_penalty_percent=30, grace_minutes=10)


@pytest.mark.parametrize("after, days", [
    (timedelta(hours=-5), 0), (timedelta(0), 0), (timedelta(minutes=10), 0),
    (timedelta(minutes=10, seconds=1), 1), (timedelta(days=1), 1),
    (timedelta(days=1, seconds=1), 2), (timedelta(days=6, hours=1), 7)])
def test_every_started_day_after_the_grace_period_counts(after, days):
    assert late_days(DUE + after, DUE, POLICY.grace_minutes) == days


def test_the_penalty_is_per_day_and_capped():
    assert [penalty_percent(d, POLICY) for d in range(6)] == [0, 10, 20, 30, 30, 30]
    assert late_days(None, DUE, 0) == 0                       # never handed in: not late


def test_lms_markers_and_extensions_decide_as_documented():
    extended = DUE + timedelta(days=3)
    assignment = Assignment(ASSIGNMENT, DUE, POLICY, {"carol": extended})

    def stamp(after: timedelta, marker: str) -> dict:
        return {"submitted_at": (DUE + after).isoformat(), "lms_marker": marker}
    assert days_late_of(assignment, "bob", stamp(timedelta(hours=2), "")) == 1
    assert days_late_of(assignment, "bob", stamp(timedelta(hours=-2), "LATE")) == 1
    assert days_late_of(assignment, "bob", stamp(timedelta(days=2, hours=1), "LATE")) == 3
    assert days_late_of(assignment, "bob", stamp(timedelta(days=4), "on time")) == 0
    assert days_late_of(assignment, "carol", stamp(timedelta(days=2), "LATE")) == 0
    assert days_late_of(assignment, "carol", stamp(timedelta(days=3, hours=1), "")) == 1
    assert days_late_of(assignment, "bob", None) == 0


# --- the files a person edits ---------------------------------------------------------------------

@pytest.mark.parametrize("roster, message", [
    ("name,email\nx,y\n", "line 1 must name the columns, one of them student_id"),
    ("student_id\nalice\nbob\nalice\n", "line 4: student_id 'alice' is already on line 2"),
    ("student_id\na/b\n", "line 2: student_id 'a/b' is not a folder name"),
    ("student_id,lms_id\na,1\nb,1\n", "line 3: lms_id '1' is already on line 2"),
])
def test_a_bad_roster_names_its_line(tmp_path, roster, message):
    (tmp_path / "roster.csv").write_text(roster)
    with pytest.raises(TermError, match=message):
        read_roster(tmp_path / "roster.csv")


@pytest.mark.parametrize("toml, message", [
    ('[assignments.a]\ndue = 2026-10-05T23:59:00\n', r"\[assignments.a\] due = .*UTC offset"),
    ('[assignments.a]\ndue = "2026-10-05T23:59:00+02:00"\n', "unquoted"),
    ('[assignments.a]\n', r"\[assignments.a\]: no due date"),
    ('[late]\npenalty_percent_per_day = 120\n', r"penalty_percent_per_day = 120: .* 0..100"),
    ('[late]\npenalty_per_day = 10\n', "unknown key.*penalty_per_day"),
    ('[assignments.a]\ndue = 2026-10-05T23:59:00Z\nextensions = { zed = 2026-10-06T23:59:00Z }\n',
     "extensions for zed, not on the roster"),
    ('[assignments.a]\ndue = 2026-10-05T23:59:00Z\nextensions = 3\n',
     r"\[assignments.a\] extensions: expected a table"),
    ('late = 5\n', r"\[late\]: expected a table"),
    ('[assignments]\na = 3\n', r"\[assignments.a\]: expected a table"),
    ('[late\n', "not valid TOML"),
])
def test_a_bad_term_file_names_its_key(tmp_path, toml, message):
    (tmp_path / "roster.csv").write_text("student_id\nalice\n")
    (tmp_path / "term.toml").write_text(toml)
    with pytest.raises(TermError, match=message):
        read_term(tmp_path)


CELLS = [ManualCell("nb", "answer_a", 2.0), ManualCell("nb", "answer_b", 3.0)]


def _manual(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "manual.csv"
    path.write_text("student_id,notebook,grade_id,score,max_score,comment\n" + "\n".join(lines))
    return path


def test_manual_rows_are_checked_and_every_bad_line_is_named(tmp_path):
    path = _manual(tmp_path, ["alice,nb,answer_a,2,2,fine", "alice,nb,answer_b,3.5,3,",
                              "bob,nb,answer_a,two,2,", "zed,nb,answer_a,1,2,",
                              "bob,nb,answer_c,1,2,", "alice,nb,answer_a,1,2,",
                              "bob,nb,answer_b,1,5,", "carol,nb,answer_a,,2,"])   # the last is fine
    with pytest.raises(TermError) as error:
        read_manual(path, CELLS, {"alice", "bob", "carol"})
    lines = str(error.value).splitlines()
    assert lines == [
        f"{path}: line 3 (alice, answer_b): score '3.5' is not within 0..3 (the cell's max_score)",
        f"{path}: line 4 (bob, answer_a): score 'two' is not a number",
        f"{path}: line 5 (zed, answer_a): student_id 'zed' is neither on the roster nor graded",
        f"{path}: line 6 (bob, answer_c): nb:answer_c is not a written-answer cell (known: "
        "nb:answer_a, nb:answer_b)",
        f"{path}: line 7 (alice, answer_a): a second row for this student and cell",
        f"{path}: line 8 (bob, answer_b): max_score '5' differs from the cell's 3"]


def test_prefill_adds_rows_and_never_changes_a_score(tmp_path):
    (tmp_path / "cells.csv").write_text(
        "student_id,notebook,grade_id,kind,score,max_score\n"
        "alice,nb,test_x,auto,1,1\nalice,nb,answer_a,manual,,2\nalice,nb,answer_b,manual,,3\n")
    (tmp_path / "manual.csv").write_text("student_id,notebook,grade_id,score,max_score,comment,"
                                         'seen_by\nalice,nb,answer_b,2.5,3,"good, but\nshort",TA\n')
    assert prefill(tmp_path, {"alice", "bob"}, ["alice", "bob"]) == 3
    rows = read_manual(tmp_path / "manual.csv", CELLS, {"alice", "bob"})
    assert [(r["student_id"], r["grade_id"], r["score"], r["comment"]) for r in rows] == [
        ("alice", "answer_a", "", ""), ("alice", "answer_b", "2.5", "good, but\nshort"),
        ("bob", "answer_a", "", ""), ("bob", "answer_b", "", "")]
    assert prefill(tmp_path, {"alice", "bob"}, ["alice", "bob"]) == 0
    assert [r["seen_by"] for r in read_csv(tmp_path / "manual.csv")] == ["", "TA", "", ""]
    row = set_score(tmp_path, {"alice", "bob"}, "bob", "nb:answer_b", "3", "full marks")
    assert (row["score"], row["comment"]) == ("3", "full marks")
    with pytest.raises(TermError, match=r"SCORE: score '2.5' is not within 0..2"):
        set_score(tmp_path, {"alice", "bob"}, "bob", "answer_a", "2.5", None)
    with pytest.raises(TermError, match="CELL_ID 'answer_z' is not a written-answer cell"):
        set_score(tmp_path, {"alice", "bob"}, "bob", "answer_z", "1", None)
    with pytest.raises(TermError, match="STUDENT 'carol' has no row for answer_a"):
        set_score(tmp_path, {"alice", "bob", "carol"}, "carol", "answer_a", "1", None)


def test_manual_errors_reach_the_command_line_as_one_message(tmp_path):
    term = new_term(tmp_path)
    base = term / ASSIGNMENT
    base.mkdir()
    (base / "cells.csv").write_text("student_id,notebook,grade_id,kind,score,max_score\n"
                                    "alice,nb,answer_a,manual,,2\n")
    (base / "grades.csv").write_text("student_id,score,max_score,manual_max_score,status,"
                                     "detail,submitted\nalice,1,1,2,ok,,nb.ipynb\n")
    prefill(base, {"alice"}, ["alice"])
    code, out = cli("manual", ASSIGNMENT, "alice", "answer_a", "7", "--term", str(term))
    assert code == 2 and out.strip() == ("python -m autograder manual: error: SCORE: score '7' "
                                         "is not within 0..2 (the cell's max_score)")
    code, out = cli("export", "nope", "--term", str(term))
    assert code == 2 and "ASSIGNMENT 'nope' has no [assignments.nope] table" in out


def test_the_term_export_adds_up_each_assignment(tmp_path):
    """Two assignments from CSV files written here (no grading): one total per assignment."""
    term = new_term(tmp_path)
    (term / "term.toml").write_text(TERM_TOML + "\n[assignments.02_dino]\n"
                                    "due = 2026-10-12T23:59:00+02:00\n")
    for name, score, manual in ((ASSIGNMENT, "9", "2"), ("02_dino", "10", "1")):
        base = term / name
        base.mkdir()
        (base / "grades.csv").write_text(
            "student_id,score,max_score,manual_max_score,status,detail,submitted\n"
            f"alice,{score},10,2,ok,,nb.ipynb\nbob,0,10,2,error,,nb.ipynb\n")
        (base / "cells.csv").write_text(
            "student_id,notebook,grade_id,kind,score,max_score\n"
            "alice,nb,answer_a,manual,,2\nbob,nb,answer_a,manual,,2\n")
        (base / "manual.csv").write_text("student_id,notebook,grade_id,score,max_score,comment\n"
                                         f"alice,nb,answer_a,{manual},2,\nbob,nb,answer_a,,2,\n")
        (base / "timestamps.csv").write_text(
            "student_id,submitted_at,source,lms_marker,files\n"
            f"alice,{DUE + timedelta(days=10 if name == '02_dino' else 0)},file time,,x\n")
    put(term / ASSIGNMENT / "submissions" / "bob" / "timestamp.txt",      # put there by hand
        b"2026-10-06 22:00:00 UTC", DUE)                 # 24 h 1 min after the due date: 2 days
    code, out = cli("export", "--term", str(term))
    assert code == 0 and "1 written answer(s) not graded yet count 0" in out, out
    rows = {r["student_id"]: r for r in read_csv(term / "export.csv")}
    # alice: 9 + 2 = 11 on time; 10 + 1 = 11 handed in 72 h after 02_dino's due date: 3 days,
    # 30 % (the cap) = 3.3, so 7.7; the term: 11 + 7.7 = 18.7 of 12 + 12
    assert {k: rows["alice"][k] for k in (ASSIGNMENT, "02_dino", "total", "max_score")} == \
        {ASSIGNMENT: "11", "02_dino": "7.7", "total": "18.7", "max_score": "24"}
    assert {k: rows["erin"][k] for k in (ASSIGNMENT, "02_dino", "total")} == \
        {ASSIGNMENT: "0", "02_dino": "0", "total": "0"}
    bob = {r["student_id"]: r for r in read_csv(term / ASSIGNMENT / "export.csv")}["bob"]
    assert (bob["status"], bob["manual_pending"], bob["total"]) == ("error", "1", "0")
    assert (bob["late_days"], bob["penalty_percent"], bob["penalty_points"]) == ("2", "20", "0")
    standing = {s.student_id: s for s in standings(read_term(term), ASSIGNMENT)}
    assert standing["dave"].status == "missing" and standing["dave"].max_score == 12
    code, out = cli("feedback", ASSIGNMENT, "--term", str(term))
    assert code == 0 and "not yet (written answers to grade, or not graded): bob" in out, out
    handback = term / ASSIGNMENT / "handback"
    assert sorted(p.name for p in handback.iterdir()) == ["alice", "carol", "dave", "erin"]
    assert "<th>Total</th><td>11 / 12</td>" in (handback / "alice" / "nb.html").read_text()


def test_grade_arguments_are_checked_before_anything_is_graded(tmp_path):
    term = new_term(tmp_path)
    code, out = cli("grade", ASSIGNMENT, str(tmp_path), "--term", str(term))
    assert code == 2 and "SUBMISSIONS goes with --out OUT" in out
    code, out = cli("grade", ASSIGNMENT, "--term", str(term))
    assert code == 2 and "submissions does not exist: collect the submissions first" in out
    (term / ASSIGNMENT / "submissions" / "alice").mkdir(parents=True)
    code, out = cli("grade", ASSIGNMENT, "--term", str(term), "--only", "alice", "zed")
    assert code == 2 and out.strip().endswith(f"--only: no folder zed in "
                                              f"{term / ASSIGNMENT / 'submissions'}")
