"""The instructor pipeline (autograder/) end to end: release, check, samples, grade.

The fixture submissions are written by ``python -m autograder samples`` from the live notebooks of
each assignment in solutions/ and of the toy assignment in tests/fixtures/, together with the
hostile submissions of ``tests/attacks.py``, and graded in ONE batch per assignment with
``--workers 2`` (module-scoped fixture; the samples that test the pipeline rather than an
assignment are graded in the toy assignment's batch only); the tests assert on its grades.csv,
cells.csv, feedback pages and printed timings. A second small batch checks that grading is
repeatable, a third that the whole-submission timeout kills and reports.
"""
from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import psutil
import pytest

from attacks import TARGETS, write_attacks
from autograder import COURSE_REPO
from autograder.redact import csv_cell, skeleton
from autograder.submissions import match_notebooks, normalise_name, restore_grade_cells
from autograder.notebooks import (colab_url, find_assignments, grade_id, read_notebook,
                                  rewrite_for_release, student_notebook_problems, write_notebook)
from autograder.release import secret_lines

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "toy_assignment"
ASSIGNMENTS = find_assignments(REPO) or ["toy_assignment"]
# Per-cell limit for the test batches. The slowest cell of any assignment's solution takes 1.8 s on
# a quiet core (its imports); 10 s leaves room for a loaded 2-core CI machine, and the looping
# fixture burns this much CPU.
CELL_TIMEOUT = "10"
# Runs nbgrader: seconds to minutes. Still part of `make test`; `make test-fast` skips it.
SLOW = pytest.mark.slow
# The samples whose grade depends on the assignment (solution, release_unmodified,
# calls_reference, corrupt, missing) and its attacks are graded in every batch. The rest test the
# pipeline itself (a loop cut by the cell timeout, test cells put back, a renamed download...),
# whatever the notebook: the toy assignment's batch grades them (about 3.5 s a submission
# against 5 to 7 s for a real assignment), the others leave them out.
PIPELINE = ["infinite_loop", "raises", "syntax_error", "deleted_tests", "edited_tests",
            "metadata_stripped", "renamed", "noisy"]
PIPELINE_BATCH = "toy_assignment"
BATCHES = ASSIGNMENTS + [PIPELINE_BATCH] * (PIPELINE_BATCH not in ASSIGNMENTS)
ATTACKED = [assignment for assignment in ASSIGNMENTS if assignment in TARGETS]
HOSTILE = [(batch, "calls_reference") for batch in BATCHES]
HOSTILE += [(PIPELINE_BATCH, fixture) for fixture in PIPELINE]
ON_PIPELINE_BATCH = pytest.mark.parametrize("batch", [PIPELINE_BATCH], indirect=True)
ON_ATTACKED = pytest.mark.parametrize("batch", ATTACKED, indirect=True)
MEMORY_MB = "2048"    # the batches' memory limit: the memfd attack holds 1.5x this and more


def autograder(*args: str, root: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    return subprocess.run([sys.executable, "-m", "autograder", "--root", str(root), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def course_root(assignment: str, tmp: Path) -> Path:
    """The repository, or a scratch root holding the toy assignment as solutions/<name>."""
    if assignment != "toy_assignment":
        return REPO
    shutil.copytree(TOY, tmp / "solutions" / assignment)
    return tmp


_BATCHES: dict[str, dict] = {}   # assignment -> its graded batch, built once per worker


@pytest.fixture(scope="module", params=BATCHES)
def batch(request, tmp_path_factory):
    """Samples of one assignment, graded once; everything the tests look at.

    pytest keeps one instance of a parametrized module fixture at a time, so tests that visit the
    assignments in turn (the indirect parametrizations below) would tear down and rebuild a batch
    that takes two minutes; the batches are kept in ``_BATCHES`` instead."""
    if request.param not in _BATCHES:
        _BATCHES[request.param] = _grade_batch(request.param, tmp_path_factory)
    return _BATCHES[request.param]


def _grade_batch(assignment: str, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp(f"grade-{assignment}")
    root = course_root(assignment, tmp)
    made = autograder("samples", assignment, str(tmp / "submissions"), root=root)
    assert made.returncode == 0, made.stdout + made.stderr
    if assignment != PIPELINE_BATCH:
        for fixture in PIPELINE:
            shutil.rmtree(tmp / "submissions" / fixture)
    table = {}
    if assignment in TARGETS:
        [solved] = sorted((tmp / "submissions" / "solution").glob("*.ipynb"))
        table = write_attacks(assignment, json.loads(solved.read_text()), solved.name,
                              tmp / "submissions", memory_mb=int(MEMORY_MB))
    graded = autograder("grade", assignment, str(tmp / "submissions"), "--out", str(tmp / "out"),
                        "--workers", "2", "--cell-timeout", CELL_TIMEOUT, "--timeout", "300",
                        "--memory-mb", MEMORY_MB, root=root)
    print(graded.stdout)
    expected = json.loads((tmp / "submissions" / "expected.json").read_text())["fixtures"]
    cells: dict[str, dict[str, dict]] = {}
    for row in read_csv(tmp / "out" / "cells.csv"):
        cells.setdefault(row["student_id"], {})[row["grade_id"]] = row
    return {"assignment": assignment, "root": root, "tmp": tmp, "run": graded,
            "expected": expected, "cells": cells, "attacks": table,
            "rows": {r["student_id"]: r for r in read_csv(tmp / "out" / "grades.csv")},
            "notebooks": sorted(p.stem for p in (root / "solutions" / assignment).glob("*.ipynb"))}


def auto_cells(batch, student: str) -> dict[str, float]:
    return {gid: float(row["score"]) for gid, row in batch["cells"][csv_cell(student)].items()
            if row["kind"] == "auto"}


# --- the batch ------------------------------------------------------------------------------------

@SLOW
def test_grade_exits_zero_with_a_row_and_feedback_per_student(batch):
    assert batch["run"].returncode == 0, batch["run"].stdout + batch["run"].stderr
    students = sorted(p.name for p in (batch["tmp"] / "submissions").iterdir() if p.is_dir())
    assert sorted(batch["rows"]) == sorted(csv_cell(s) for s in students)
    for student in students:
        for notebook in batch["notebooks"]:
            page = batch["tmp"] / "out" / "feedback" / student / f"{notebook}.html"
            assert page.is_file() and page.stat().st_size > 200, page
    assert re.search(r"total \d+\.\d s", batch["run"].stdout)


@SLOW
def test_solution_scores_full_autograded_marks(batch):
    row = batch["rows"]["solution"]
    assert row["status"] == "ok", row
    assert float(row["score"]) == float(row["max_score"]) > 0, row
    for gid, cell in batch["cells"]["solution"].items():
        if cell["kind"] == "auto":
            assert cell["score"] == cell["max_score"], gid
    assert float(row["manual_max_score"]) > 0   # written answers are reported apart


@SLOW
def test_solution_is_graded_within_a_minute(batch):
    line = next(l for l in batch["run"].stdout.splitlines() if l.startswith("solution "))
    seconds = float(re.search(r"([\d.]+) s ", line).group(1))
    assert seconds < 60, line


@SLOW
def test_unmodified_release_scores_zero_on_code_exercises(batch):
    row = batch["rows"]["release_unmodified"]
    assert row["status"] == "ok", row
    zero = batch["expected"]["release_unmodified"]["zero"]
    assert zero, "the assignment has no test cell after a code answer"
    scores = auto_cells(batch, "release_unmodified")
    assert {gid: scores[gid] for gid in zero} == {gid: 0.0 for gid in zero}


@SLOW
@pytest.mark.parametrize("batch, fixture", HOSTILE, indirect=["batch"])
def test_hostile_submission_loses_only_what_it_should(batch, fixture):
    assert fixture in batch["expected"], f"samples wrote no {fixture} for {batch['assignment']}"
    expected, row = batch["expected"][fixture], batch["rows"][fixture]
    assert row["status"] == expected["status"], row
    solution, got = auto_cells(batch, "solution"), auto_cells(batch, fixture)
    want = {gid: 0.0 if gid in expected["zero"] else score for gid, score in solution.items()}
    assert got == want, row["detail"]


@SLOW
@ON_PIPELINE_BATCH
def test_details_explain_what_happened(batch):
    rows = batch["rows"]
    assert "cell timeout" in rows["infinite_loop"]["detail"]
    assert "restored deleted cells" in rows["deleted_tests"]["detail"]
    assert "restored edited test cells" in rows["edited_tests"]["detail"]
    assert "Copy of" in rows["renamed"]["detail"] and "Copy of" in rows["renamed"]["submitted"]


@SLOW
def test_broken_and_missing_submissions_still_get_a_row(batch):
    corrupt, missing = batch["rows"]["corrupt"], batch["rows"]["missing"]
    assert (corrupt["status"], corrupt["score"]) == ("error", "0"), corrupt
    assert "JSON" in corrupt["detail"]
    assert (missing["status"], missing["score"]) == ("missing", "0"), missing
    page = batch["tmp"] / "out" / "feedback" / "corrupt" / f"{batch['notebooks'][0]}.html"
    assert "could not run your notebook" in page.read_text()


@SLOW
# A property of the pipeline, not of an assignment: the toy assignment's batch is enough.
@ON_PIPELINE_BATCH
def test_grading_twice_gives_identical_rows(batch):
    again = batch["tmp"] / "again"
    for student in ("solution", "corrupt", "missing"):
        shutil.copytree(batch["tmp"] / "submissions" / student, again / student)
    run = autograder("grade", batch["assignment"], str(again), "--out",
                     str(batch["tmp"] / "out-again"), "--workers", "2", "--cell-timeout",
                     CELL_TIMEOUT, root=batch["root"])
    assert run.returncode == 0, run.stdout + run.stderr
    first = (batch["tmp"] / "out" / "grades.csv").read_text().splitlines()
    second = (batch["tmp"] / "out-again" / "grades.csv").read_text().splitlines()
    assert second == [first[0]] + [line for line in first[1:]
                                    if line.split(",")[0] in {"solution", "corrupt", "missing"}]


@SLOW
# A property of the pipeline, not of an assignment: the toy assignment's batch is enough.
@ON_PIPELINE_BATCH
def test_whole_submission_timeout_kills_and_reports(batch):
    slow = batch["tmp"] / "slow"
    shutil.copytree(batch["tmp"] / "submissions" / "infinite_loop", slow / "infinite_loop")
    out = batch["tmp"] / "out-slow"
    run = autograder("grade", batch["assignment"], str(slow), "--out", str(out), "--keep-work",
                     "--timeout", "10", "--cell-timeout", "600", root=batch["root"])
    assert run.returncode == 0, run.stdout + run.stderr
    [row] = read_csv(out / "grades.csv")
    assert (row["status"], row["score"]) == ("timeout", "0"), row
    page = out / "feedback" / "infinite_loop" / f"{batch['notebooks'][0]}.html"
    assert "took longer than the time allowed" in page.read_text()
    # --keep-work put this run's work directory, which every process of its jail names on its
    # command line, under OUT: processes of a batch the other xdist worker is grading do not match.
    work = out / "work" / "infinite_loop"
    assert work.is_dir(), "the grader did not keep its work directory"
    kernels = [p for p in psutil.process_iter(["cmdline"])
               if any(str(work) in part for part in (p.info["cmdline"] or []))]
    assert not kernels, "a kernel outlived its submission's timeout"


# --- the attacks (tests/attacks.py): the trust model ---------------------------------------------

def _row_of(batch, student: str) -> dict:
    return batch["rows"][csv_cell(student)]


def _attack_table(batch) -> str:
    lines = [f"{'student':<22} {'score':>7} {'status':<7} mechanism"]
    for student, attack in batch["attacks"].items():
        row = _row_of(batch, student)
        lines.append(f"{csv_cell(student):<22} {row['score']:>3}/{row['max_score']:<3} "
                     f"{row['status']:<7} {attack.mechanism}")
    return "\n".join(lines)


def _target_tests(batch) -> set[str]:
    """The test cells an attack on the target answer breaks: its own and those that call it."""
    return set(TARGETS[batch["assignment"]][5])


def _lost_only(batch, student: str, lost: set[str]) -> None:
    """The attack's status is ok and it scored what the solution scored, less ``lost``."""
    row = _row_of(batch, student)
    assert row["status"] == "ok", row
    solution = auto_cells(batch, "solution")
    want = {gid: 0.0 if gid in lost else score for gid, score in solution.items()}
    assert auto_cells(batch, student) == want, row["detail"]


def _hidden_skeletons(batch) -> set[str]:
    """Skeletons of the hidden-test lines that nothing else shows: not the release (where a line
    may stand with other spacing or inside a longer one) and not the solutions (the attacks are
    built from the solution, so its lines are their own text here)."""
    from autograder.notebooks import HIDDEN_TESTS, SOLUTION, region_flags
    shown, secret = [], set()
    for path in (REPO / "exercises" / batch["assignment"]).glob("*.ipynb"):
        shown += [skeleton(cell.source) for cell in read_notebook(path).cells]
    for path in (REPO / "solutions" / batch["assignment"]).glob("*.ipynb"):
        for cell in read_notebook(path).cells:
            shown += [skeleton(line) for line, where in region_flags(cell.source, SOLUTION)
                      if where == "inside"]
            secret |= {skeleton(line) for line, where in region_flags(cell.source, HIDDEN_TESTS)
                       if where == "inside"}
    everything_shown = "\n".join(shown)
    return {line for line in secret if len(line) >= 16 and line not in everything_shown}


@SLOW
@ON_ATTACKED
def test_every_attack_gets_a_row_next_to_a_full_marks_solution(batch):
    print("\n" + _attack_table(batch))
    assert batch["run"].returncode == 0, batch["run"].stdout + batch["run"].stderr
    for student in batch["attacks"]:
        assert csv_cell(student) in batch["rows"], student
    row = batch["rows"]["solution"]
    assert row["status"] == "ok" and row["score"] == row["max_score"], row


@SLOW
@ON_ATTACKED
def test_oracles_and_expected_values_never_reach_the_kernel(batch):
    code = batch["assignment"][:2]
    lost = _target_tests(batch)
    if batch["assignment"] == "01_infonce":
        lost.add("test_negative_gradient")          # the attack read a variable named `want`
    _lost_only(batch, f"oracle_hunter_{code}", lost)


@SLOW
@ON_ATTACKED
def test_a_forged_executed_notebook_and_a_killed_executor_score_zero(batch):
    row = _row_of(batch, f"forges_executed_{batch['assignment'][:2]}")
    assert (row["status"], row["score"]) == ("error", "0"), row
    assert "exited with status" in row["detail"], row


@SLOW
@ON_ATTACKED
def test_disguised_hidden_lines_reach_no_page_row_or_log(batch):
    student = f"leaks_disguised_{batch['assignment'][:2]}"
    secrets = _hidden_skeletons(batch)
    assert len(secrets) > 20
    out = batch["tmp"] / "out"
    texts = {"stdout": batch["run"].stdout, "grades.csv": (out / "grades.csv").read_text(),
             "cells.csv": (out / "cells.csv").read_text()}
    for page in (out / "feedback" / student).glob("*.html"):
        texts[page.name] = html.unescape(page.read_text())
    for where, text in texts.items():
        shape = skeleton(text)
        assert not [line for line in secrets if line in shape], where
    printed = "".join(str(o.get("text", "")) for path in (out / "autograded" / student).glob("*")
                      for c in read_notebook(path).cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "\u200b" in printed                  # the attack did print the disguised lines
    _lost_only(batch, student, _target_tests(batch))


# The batch-level attacks (tests/attacks.py) are written into the first assignment's batch only.
FIRST = pytest.mark.parametrize("batch", ASSIGNMENTS[:1], indirect=True)


@pytest.fixture
def infonce(batch):
    assert batch["assignment"] == "01_infonce" and "forges_journal" in batch["attacks"]
    return batch


@SLOW
@FIRST
def test_a_rewritten_journal_and_hidden_errors_earn_nothing(infonce):
    _lost_only(infonce, "forges_journal", {"test_uniformity"})


@SLOW
@FIRST
def test_a_journal_line_with_a_huge_shape_is_read_in_milliseconds(infonce):
    _lost_only(infonce, "huge_shape", {"test_uniformity", "test_momentum_update"})
    line = next(l for l in infonce["run"].stdout.splitlines() if l.startswith("huge_shape "))
    assert float(re.search(r"([\d.]+) s ", line).group(1)) < 60, line


@SLOW
@FIRST
def test_memory_held_in_memfd_pages_is_counted(infonce):
    row = _row_of(infonce, "memfd_hog")
    assert (row["status"], row["score"]) == ("memory", "0"), row


@SLOW
@FIRST
def test_names_that_are_not_utf8_are_escaped_not_fatal(infonce):
    row = _row_of(infonce, "non_utf8_\udce9")
    assert row["student_id"] == "non_utf8_\\xe9" and "\\xe9t\\xe9" in row["submitted"], row
    _lost_only(infonce, "non_utf8_\udce9", set())
    assert (infonce["tmp"] / "out" / "cells.csv").is_file()


@SLOW
@FIRST
def test_symbolic_links_are_refused_not_followed(infonce):
    solution_lines = _hidden_skeletons(infonce)
    for student in ("symlink_file", "symlink_folder"):
        row = _row_of(infonce, student)
        assert (row["status"], row["score"]) == ("error", "0"), row
        assert "symbolic link" in row["detail"], row
        page = html.unescape((infonce["tmp"] / "out" / "feedback" / student /
                              "infonce.html").read_text())
        assert not [line for line in solution_lines if line in skeleton(page)]


@SLOW
@FIRST
def test_no_csv_cell_starts_a_formula(infonce):
    for name in ("grades.csv", "cells.csv"):
        for row in read_csv(infonce["tmp"] / "out" / name):
            assert not [v for v in row.values() if v.startswith(("=", "+", "-", "@"))], row
    row = _row_of(infonce, '=HYPERLINK("x")')
    assert row["student_id"].startswith("'=") and row["status"] == "error", row
    assert "HYPERLINK" not in row["detail"], row


@SLOW
@FIRST
def test_honest_students_are_not_marked_down(infonce):
    _lost_only(infonce, "numpy_and_scratch", set())       # numpy.float64, and a scratch check
    _lost_only(infonce, "raw_test_cell", set())
    detail = _row_of(infonce, "raw_test_cell")["detail"]
    assert "restored test cells changed to another cell type: test_uniformity" in detail


@SLOW
@FIRST
def test_each_submission_runs_as_its_own_user(infonce):
    uids = []
    for student in ("numpy_and_scratch", "raw_test_cell"):
        nb = read_notebook(infonce["tmp"] / "out" / "autograded" / student / "infonce.ipynb")
        text = "".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
        uids += re.findall(r"UID (\d+)", text)
    assert len(uids) == 2 and uids[0] != uids[1], uids
    if os.geteuid() == 0:
        assert all(int(uid) >= 100000 for uid in uids), uids


# --- release and check ----------------------------------------------------------------------------

@SLOW
def test_check_passes_on_the_committed_tree():
    run = autograder("check", root=REPO, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


@SLOW
@pytest.mark.parametrize("assignment", ASSIGNMENTS[:1])
def test_release_passes_check_and_tampering_fails_it(assignment, tmp_path):
    root = tmp_path / "repo"
    if assignment == "toy_assignment":
        course_root(assignment, root)
    else:   # one assignment is enough: `check` of the whole tree is the test above
        shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment)
    assert autograder("release", root=root).returncode == 0
    clean = autograder("check", root=root)
    assert clean.returncode == 0, clean.stdout   # regenerated bytes equal: release is deterministic
    source = sorted((root / "solutions" / assignment).glob("*.ipynb"))[0]
    released = root / "exercises" / assignment / source.name
    nb = read_notebook(released)
    leaked = sorted(secret_lines(read_notebook(source)))[0]
    answer = next(c for c in nb.cells if c.cell_type == "code" and "YOUR CODE HERE" in c.source)
    answer.source += "\n" + leaked
    write_notebook(nb, released)
    tampered = autograder("check", root=root)
    assert tampered.returncode == 1
    assert "differs from what release writes" in tampered.stdout
    assert "contains a line of the solution or hidden tests" in tampered.stdout


def test_the_gradebook_revision_read_in_process_is_the_one_alembic_reports(monkeypatch):
    """The release step records the schema revision without nbgrader's `alembic heads` process."""
    from nbgrader.api import get_alembic_version
    from autograder.nbgrader_job import alembic_head
    assert get_alembic_version is not alembic_head
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    assert alembic_head() == get_alembic_version()


def test_the_pipeline_validates_notebooks_without_the_iri_grammar():
    """autograder/__init__.py keeps jsonschema from building its IRI grammar (seconds per
    process); nbformat's validation, which needs no IRI format, still runs and still rejects."""
    [notebook] = sorted((REPO / "solutions" / ASSIGNMENTS[0]).glob("*.ipynb"))[:1]
    script = textwrap.dedent(f"""
        import sys
        import autograder, nbformat
        assert sys.modules["rfc3987_syntax"] is None
        nb = nbformat.read({str(notebook)!r}, as_version=4)
        nbformat.validate(nb)
        del nb.cells[0]["cell_type"]
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError:
            print("rejected")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "rejected", run.stdout + run.stderr


@SLOW
def test_a_test_cell_with_a_plain_assert_stops_the_batch_before_anyone_is_graded(tmp_path):
    """Points come only from the checks course_lib.grading records: a test cell that records
    none would pass every submission, the unmodified release included, so the template refuses
    it and names the cell."""
    root = course_root("toy_assignment", tmp_path)
    source = root / "solutions" / "toy_assignment" / "toy.ipynb"
    nb = read_notebook(source)
    cell = next(c for c in nb.cells if grade_id(c) == "test_squared_distance_visible")
    cell.source = "assert torch.allclose(squared_distance(torch.ones(2, 2), torch.ones(2, 2)), torch.zeros(2))"
    write_notebook(nb, source)
    (tmp_path / "subs" / "someone").mkdir(parents=True)
    shutil.copy(source, tmp_path / "subs" / "someone" / "toy.ipynb")
    run = autograder("grade", "toy_assignment", str(tmp_path / "subs"), "--out",
                     str(tmp_path / "out"), root=root)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "test_squared_distance_visible of toy.ipynb record no check" in run.stdout + run.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_a_test_cell_whose_golden_journal_is_empty_earns_nothing():
    from autograder.journal import verdict
    result = verdict("test_anything", 2.0, None, [], [])
    assert (result.score, result.passed) == (0, False)
    assert "records no check" in result.messages[0]


# --- pieces, without nbgrader ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["infonce.ipynb", "Copy of infonce.ipynb", "infonce (1).ipynb",
                                  "Copy of InfoNCE (2).ipynb", "infonce-checkpoint.ipynb"])
def test_renamed_downloads_normalise_to_the_notebook_name(name):
    assert normalise_name(name) == "infonce"


def test_single_notebook_assignment_takes_the_only_notebook(tmp_path):
    (tmp_path / "anything at all.ipynb").write_text("{}")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._infonce.ipynb").write_text("junk")
    matched, notes = match_notebooks(tmp_path, ["infonce"])
    assert matched == {"infonce": tmp_path / "anything at all.ipynb"}
    assert notes and "anything at all.ipynb" in notes[0]


def test_several_notebooks_are_matched_by_name(tmp_path):
    for name in ("Copy of simclr.ipynb", "moco (1).ipynb", "scratch.ipynb"):
        (tmp_path / name).write_text("{}")
    matched, _ = match_notebooks(tmp_path, ["moco", "simclr", "dino"])
    assert matched == {"moco": tmp_path / "moco (1).ipynb",
                       "simclr": tmp_path / "Copy of simclr.ipynb"}


def _toy_release_and_source():
    source = read_notebook(TOY / "toy.ipynb")
    release = read_notebook(TOY / "toy.ipynb")
    return source, rewrite_for_release(release, "toy_assignment", "toy")


def test_deleted_test_cell_is_put_back_after_its_answer():
    _, release = _toy_release_and_source()
    submission = read_notebook(TOY / "toy.ipynb")
    hidden = "test_squared_distance_hidden"
    submission.cells = [c for c in submission.cells if grade_id(c) != hidden]
    repairs = restore_grade_cells(submission, release)
    assert repairs.restored == [hidden] and repairs.edited == [] and repairs.retyped == []
    ids = [grade_id(c) for c in submission.cells]
    assert ids.index(hidden) == ids.index("test_squared_distance_visible") + 1


def test_a_test_cell_turned_into_a_raw_cell_is_put_back_as_code():
    _, release = _toy_release_and_source()
    submission = read_notebook(TOY / "toy.ipynb")
    hidden = "test_squared_distance_hidden"
    index = [grade_id(c) for c in submission.cells].index(hidden)
    submission.cells[index] = nbformat.v4.new_raw_cell(submission.cells[index].source,
                                                       metadata=submission.cells[index].metadata)
    repairs = restore_grade_cells(submission, release)
    assert repairs.retyped == [hidden] and repairs.restored == []
    assert submission.cells[index].cell_type == "code"
    assert "changed to another cell type: " + hidden in repairs.notes()[0]


def test_cells_stripped_of_metadata_are_recognised_in_place():
    _, release = _toy_release_and_source()
    release.cells[-1].source = "YOUR ANSWER HERE"      # the written answer, as released
    submission = read_notebook(TOY / "toy.ipynb")      # solved, then metadata lost
    for cell in submission.cells:
        cell.metadata.pop("nbgrader", None)
    restored = restore_grade_cells(submission, release).restored
    ids = [grade_id(c) for c in release.cells]
    # every cell is recognised by its first line, except the written answer, which no longer
    # starts like its stub: an empty answer cell is put back at the end for the human grader
    assert [grade_id(c) for c in submission.cells] == ids[:-1] + [None, "why_at_most_four"]
    assert restored == ["why_at_most_four"]


def test_release_rewrites_badge_and_install_to_course_repo():
    _, release = _toy_release_and_source()
    assert colab_url("toy_assignment", "toy") in release.cells[0].source
    assert "/solutions/" not in release.cells[0].source
    assert f"git+https://github.com/{COURSE_REPO}" in release.cells[1].source
    assert student_notebook_problems(release, "toy_assignment", "toy") == []
    release.cells[0].source = "# no badge"
    assert student_notebook_problems(release, "toy_assignment", "toy")


def test_secret_lines_cover_solutions_and_hidden_tests_only():
    source, _ = _toy_release_and_source()
    secrets = secret_lines(source)
    assert "return ((x - y) ** 2).sum(dim=-1)" in secrets                      # a solution
    assert "torch.stack([torch.dot(a[i] - b[i], a[i] - b[i]) for i in range(5)])," in secrets  # hidden
    assert ('got = run_answer("squared_distance(x, y)", squared_distance, x, y, '
            'hint="sum over the last axis")') not in secrets                   # visible test
    assert "def squared_distance(x, y):" not in secrets                         # given signature


def test_the_noisy_sample_keeps_each_solution_region_its_own_body():
    """A cell that solves two functions: the noise goes into each, and neither function gets the
    other's body (the second would otherwise return the first's result, or raise)."""
    from autograder.samples import _noisy
    cell = nbformat.v4.new_code_cell("\n".join([
        "def first(x):",
        "    ### BEGIN SOLUTION",
        "    return x + 1",
        "    ### END SOLUTION",
        "",
        "def second(y):",
        "    ### BEGIN SOLUTION",
        "    return 2 * y",
        "    ### END SOLUTION"]))
    namespace: dict = {}
    with pytest.warns(UserWarning, match="a deprecated call"):
        exec(_noisy(cell), namespace)
        assert (namespace["first"](1), namespace["second"](5)) == (2, 10)
    assert _noisy(cell).count("_warnings.warn(") == 2


def test_samples_find_callable_references_without_importing_them():
    """``autograder samples`` reads which references a test forbids from the modules' source: the
    reference modules (torch, timm, torchvision) are not imported, and the answers are those an
    import gives."""
    script = textwrap.dedent("""
        import sys
        from autograder import samples
        answers = [samples._importable_function(name) for name in (
            "course_lib.simclr.info_nce", "course_lib.dino.DINOLoss",       # a def and a class
            "course_lib.dino.DINOLoss.forward",   # below a module: no module of that name
            "course_lib.nope.f", "nope.f")]
        print(answers, samples._reference_constant("MAE_REFERENCES")[0],
              sorted(m for m in ("torch", "course_lib.dino", "course_lib.simclr") if m in sys.modules))
        print(samples._importable_function("course_lib.simclr.torch"))   # not a def: imported, asked
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert first == "[True, True, False, False, False] course_lib.mae.patchify []", first
    assert second == "False"            # course_lib.simclr.torch is the torch module: not callable
