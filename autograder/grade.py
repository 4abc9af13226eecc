"""``grade``: autograde every submission of one assignment, each in its own nbgrader course.

1. A template course is built once: ``source/<assignment>`` from solutions/, ``nbgrader
   generate_assignment`` -> ``gradebook.db`` and ``release/`` (the notebooks students got).
2. Each submission gets a copy of the template (its own gradebook: workers never share a SQLite
   file, one submission cannot touch another's) and ``nbgrader autograde`` runs as a subprocess
   under a wall-clock limit (killed with its kernel past it) and a per-cell limit (a looping cell
   is interrupted and the rest runs). Test cells are restored from the gradebook by nbgrader; test
   cells a student deleted are put back before grading.
3. ``nbgrader generate_feedback`` writes the HTML; when nbgrader fails or times out, the student
   still gets a row and a feedback page that says what happened.

Scores come from each submission's gradebook (nbgrader's ``Gradebook`` API), capped by the
template's maximum so a tampered gradebook cannot raise them.
"""
from __future__ import annotations

import copy
import csv
import html
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .course import generate_assignment, grading_env, last_error_line, make_course, run_module
from .notebooks import (grade_id, is_code_answer, is_grade, is_solution, is_test, read_notebook,
                        source_notebooks, write_notebook)

STUDENT = "student"            # the nbgrader student id inside every per-submission course
GRADES_COLUMNS = ["student_id", "score", "max_score", "manual_max_score", "status", "detail",
                  "submitted"]
CELLS_COLUMNS = ["student_id", "notebook", "grade_id", "kind", "score", "max_score"]


@dataclass(frozen=True)
class GradedCell:
    notebook: str
    grade_id: str
    max_score: float
    manual: bool          # a written answer graded by a person, not by tests


@dataclass
class Job:
    student_id: str
    files: dict[str, str]                 # notebook name -> submitted file
    notes: list[str] = field(default_factory=list)


# --- finding the submissions ----------------------------------------------------------------------

def normalise_name(filename: str) -> str:
    """'Copy of InfoNCE (1).ipynb' -> 'infonce': what Colab and browsers do to a name, undone."""
    stem = filename[:-6] if filename.lower().endswith(".ipynb") else filename
    stem = stem.lower().strip()
    stem = re.sub(r"^(copy of\s+)+", "", stem)
    stem = re.sub(r"(\s*\(\d+\))+$", "", stem)                 # 'infonce (1)'
    stem = re.sub(r"[-_ ](copy|checkpoint)(\s*\d+)?$", "", stem)  # 'infonce-checkpoint'
    return re.sub(r"[^a-z0-9]", "", stem)


def _candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not any(
        part.startswith((".", "__MACOSX")) for part in p.relative_to(folder).parts))


def match_notebooks(folder: Path, notebooks: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Submitted file for each assignment notebook, and notes on what was guessed."""
    found = _candidates(folder)
    notes: list[str] = []
    by_name: dict[str, list[Path]] = {}
    for path in found:
        by_name.setdefault(normalise_name(path.name), []).append(path)
    matched: dict[str, Path] = {}
    if len(notebooks) == 1 and found:
        name = notebooks[0]
        same = by_name.get(normalise_name(name), [])
        matched[name] = same[0] if same else found[0]
        if len(found) > 1:
            notes.append(f"{len(found)} notebooks submitted, graded {matched[name].name!r}")
    else:
        for name in notebooks:
            same = by_name.get(normalise_name(name), [])
            if same:
                matched[name] = same[0]
            elif found:
                notes.append(f"no file matches {name}.ipynb")
    for name, path in matched.items():
        if path.name != f"{name}.ipynb":
            notes.append(f"graded {path.relative_to(folder).as_posix()!r} as {name}.ipynb")
    return matched, notes


def find_jobs(submissions: Path, notebooks: list[str]) -> list[Job]:
    jobs = []
    for folder in sorted(p for p in submissions.iterdir()
                         if p.is_dir() and not p.name.startswith((".", "__MACOSX"))):
        matched, notes = match_notebooks(folder, notebooks)
        jobs.append(Job(folder.name, {k: str(v) for k, v in matched.items()}, notes))
    return jobs


# --- the template course --------------------------------------------------------------------------

def build_template(root: Path, assignment: str, work: Path) -> tuple[Path, list[GradedCell]]:
    """Template course (source, release, gradebook) and the graded cells in notebook order."""
    course = make_course(work / "template", root / "solutions", assignment)
    run = generate_assignment(course, assignment)
    if not run.ok:
        raise RuntimeError(f"nbgrader generate_assignment failed: {last_error_line(run.output)}"
                           f"\n{run.output[-3000:]}")
    cells = []
    for path in source_notebooks(root, assignment):
        for cell in read_notebook(path).cells:
            if is_grade(cell):
                cells.append(GradedCell(path.stem, grade_id(cell),
                                        float(cell.metadata.nbgrader.get("points", 0)),
                                        manual=is_solution(cell)))
    return course, cells


# --- one submission (runs in a worker process) ----------------------------------------------------

def _keys(cell) -> list[tuple[str, str, str]]:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return [(cell.cell_type, "first line", first), (cell.cell_type, "source", cell.source.strip())]


def _recognise_stripped_cells(nb, release_nb) -> None:
    """Give back nbgrader metadata to cells that lost it (VS Code, copy and paste).

    A locked cell (test, instructions) is recognised by its whole source, an answer by its first
    line (the given signature); only keys that single out one cell of the release count.
    """
    def key(ref):
        return _keys(ref)[0 if is_solution(ref) else 1]

    counts = Counter(k for cell in release_nb.cells for k in _keys(cell))
    unique = {key(c): c for c in release_nb.cells if grade_id(c) and counts[key(c)] == 1}
    present = {grade_id(c) for c in nb.cells}
    for cell in nb.cells:
        if grade_id(cell) is not None:
            continue
        ref = next((unique[k] for k in _keys(cell) if k in unique), None)
        if ref is not None and grade_id(ref) not in present:
            cell.setdefault("metadata", {})["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
            present.add(grade_id(ref))


def restore_grade_cells(nb, release_nb) -> tuple[list[str], list[str]]:
    """Put back nbgrader metadata and deleted grade cells, from the released notebook.

    nbgrader restores the source of locked cells it can find by ``grade_id`` (and puts the hidden
    tests back); a cell whose metadata was edited, or that was deleted, is repaired here first so
    that nbgrader finds it. Code answers are never re-inserted: that would replace the student's
    own definitions with the stub. Returns (restored grade ids, edited test cell ids).
    """
    released = {grade_id(c): c for c in release_nb.cells if grade_id(c)}
    _recognise_stripped_cells(nb, release_nb)
    edited = []
    for cell in nb.cells:
        ref = released.get(grade_id(cell))
        if ref is not None and cell.cell_type == ref.cell_type:
            cell.metadata["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
            if is_test(ref) and cell.source != ref.source and grade_id(ref) not in edited:
                edited.append(grade_id(ref))
    present = [grade_id(c) for c in nb.cells]
    cell_ids = {c.get("id") for c in nb.cells}
    restored = []
    for index, ref in enumerate(release_nb.cells):
        gid = grade_id(ref)
        if gid is None or gid in present or not is_grade(ref) or is_code_answer(ref):
            continue
        anchors = [grade_id(c) for c in release_nb.cells[:index] if grade_id(c) in present]
        position = (len(present) - present[::-1].index(anchors[-1])) if anchors else len(present)
        cell = copy.deepcopy(ref)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if nb.get("nbformat_minor", 0) < 5:
            cell.pop("id", None)
        elif cell.get("id") in cell_ids:
            cell["id"] = f"{cell['id']}-restored"
        nb.cells.insert(position, cell)
        present.insert(position, gid)
        restored.append(gid)
    return restored, edited


def _prepare(src: Path, release_path: Path, dest: Path) -> tuple[list[str], list[str]]:
    """Copy a submission into the course, repaired where possible (see restore_grade_cells)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        nb = read_notebook(src)
        restored, edited = restore_grade_cells(nb, read_notebook(release_path))
        write_notebook(nb, dest)
        return restored, edited
    except Exception:   # noqa: BLE001 - not a notebook: let nbgrader fail on it and report
        shutil.copyfile(src, dest)
        return [], []


def _read_scores(db: Path, assignment: str) -> dict[tuple[str, str], float | None]:
    """(notebook, grade_id) -> auto_score, from the submission's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    scores: dict[tuple[str, str], float | None] = {}
    try:
        with Gradebook(f"sqlite:///{db}", course_id="ssl-vision") as gb:
            try:
                submission = gb.find_submission(assignment, STUDENT)
            except MissingEntry:
                return scores
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    scores[(notebook.name, grade.name)] = grade.auto_score
    except Exception:   # noqa: BLE001 - a broken gradebook means no scores, not a crash
        pass
    return scores


def _cell_failures(notebook: Path) -> tuple[list[str], list[str]]:
    """(test cells with an error: 'id (Ename)', other cells that hit the per-cell timeout)."""
    try:
        nb = read_notebook(notebook)
    except Exception:   # noqa: BLE001
        return [], []
    failed, timeouts = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        names = [o.get("ename", "") for o in cell.outputs if o.get("output_type") == "error"]
        if is_test(cell) and names:
            failed.append(f"{grade_id(cell)} ({names[0]})")
        elif "CellTimeoutError" in names:
            timeouts.append(grade_id(cell) or f"cell {index}")
    return failed, timeouts


def _feedback_page(student_id: str, assignment: str, notebook: str, status: str, reason: str,
                   score: float, max_score: float, log_tail: str) -> str:
    explain = {
        "timeout": "Grading your notebook took longer than the time allowed for a whole "
                   "notebook, so it was stopped. Usually one cell runs far longer than it should "
                   "(a loop that never ends, a run at the GPU scale on the grading CPU).",
        "error": "The grader could not run your notebook. Check that you submitted the .ipynb "
                 "file itself (Colab: File > Download > Download .ipynb), that it opens in "
                 "Jupyter, and that it runs top to bottom.",
        "missing": "No notebook was found in your submission.",
    }.get(status, "The grader could not produce the usual feedback page.")
    log = f"<h2>What the grader reported</h2>\n<pre>{html.escape(log_tail)}</pre>\n" if log_tail \
        else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>Feedback: {html.escape(assignment)}/{html.escape(notebook)}</title></head>\n"
            f"<body>\n<h1>{html.escape(assignment)} / {html.escape(notebook)}: "
            f"{html.escape(student_id)}</h1>\n<p><b>Status: {status}</b> ({html.escape(reason)})"
            f"</p>\n<p>{explain}</p>\n<p>Autograded score: {score:g} / {max_score:g}. Contact "
            f"the course staff if you think this is wrong.</p>\n{log}</body></html>\n")


def _cell_rows(student_id: str, cells: list[GradedCell],
               scores: dict[tuple[str, str], float | None]) -> list[dict]:
    """cells.csv rows; an autograded cell with no score counts 0, a manual one stays empty."""
    rows = []
    for cell in cells:
        raw = scores.get((cell.notebook, cell.grade_id))
        value = None if raw is None else min(max(float(raw), 0.0), cell.max_score)
        if value is None and not cell.manual:
            value = 0.0
        rows.append({"student_id": student_id, "notebook": cell.notebook,
                     "grade_id": cell.grade_id, "kind": "manual" if cell.manual else "auto",
                     "score": "" if value is None else f"{value:g}",
                     "max_score": f"{cell.max_score:g}"})
    return rows


def _row(student_id: str, cell_rows: list[dict], status: str, details: list[str],
         submitted: str) -> dict:
    auto = [r for r in cell_rows if r["kind"] == "auto"]
    manual = [r for r in cell_rows if r["kind"] == "manual"]
    return {"student_id": student_id, "score": f"{sum(float(r['score']) for r in auto):g}",
            "max_score": f"{sum(float(r['max_score']) for r in auto):g}",
            "manual_max_score": f"{sum(float(r['max_score']) for r in manual):g}",
            "status": status, "detail": "; ".join(details), "submitted": submitted}


def _ok_details(autograded: Path, notebooks: list[str], cell_rows: list[dict]) -> list[str]:
    auto = [r for r in cell_rows if r["kind"] == "auto"]
    passed = sum(1 for r in auto if r["score"] == r["max_score"])
    failed, timeouts = [], []
    for name in notebooks:
        f, t = _cell_failures(autograded / f"{name}.ipynb")
        failed, timeouts = failed + f, timeouts + t
    details = [f"{passed}/{len(auto)} test cells passed"]
    if failed:
        details.append("failed: " + ", ".join(failed))
    if timeouts:
        details.append("cell timeout: " + ", ".join(timeouts))
    return details


def grade_submission(task: dict) -> dict:
    """Grade one student's files in a fresh copy of the template course; return row and cells."""
    start = time.monotonic()
    template, out = Path(task["template"]), Path(task["out"])
    if task["keep_work"]:
        course = out / "work" / task["student_id"]
        shutil.rmtree(course, ignore_errors=True)
    else:
        course = Path(tempfile.mkdtemp(prefix="autograde-")) / "course"
    shutil.copytree(template, course, ignore=shutil.ignore_patterns("release", ".nbgrader*"))
    try:
        result = _grade_in(course, template, task)
    finally:
        if not task["keep_work"]:
            shutil.rmtree(course.parent, ignore_errors=True)
    return {**result, "seconds": time.monotonic() - start}


def _grade_in(course: Path, template: Path, task: dict) -> dict:
    student_id, assignment, out = task["student_id"], task["assignment"], Path(task["out"])
    restored, edited = [], []
    for name, src in task["files"].items():
        dest = course / "submitted" / STUDENT / assignment / f"{name}.ipynb"
        fixed = _prepare(Path(src), template / "release" / assignment / f"{name}.ipynb", dest)
        restored, edited = restored + fixed[0], edited + fixed[1]
    args = ["autograder.nbgrader_job", "autograde", assignment, STUDENT]
    if task["cell_timeout"]:
        args += ["--cell-timeout", str(task["cell_timeout"])]
    run = run_module(args, course, timeout=task["timeout"],
                     env=grading_env(course, threads=task["threads"]))
    autograded = course / "autograded" / STUDENT / assignment
    status = ("timeout" if run.timed_out else
              "ok" if run.returncode in (0, 2) and autograded.is_dir() else "error")
    cell_rows = _cell_rows(student_id, [GradedCell(**c) for c in task["cells"]],
                           _read_scores(course / "gradebook.db", assignment))

    if status == "ok":
        details = _ok_details(autograded, task["notebooks"], cell_rows)
        (out / "autograded" / student_id).mkdir(parents=True, exist_ok=True)
        for path in sorted(autograded.glob("*.ipynb")):
            shutil.copyfile(path, out / "autograded" / student_id / path.name)
    elif status == "timeout":
        details = [f"grading stopped after {task['timeout']:g} s"]
    else:
        details = [last_error_line(run.output).replace(str(course), "<course>")[:200]]
    if restored:
        details.append("restored deleted cells: " + ", ".join(restored))
    if edited:
        details.append("restored edited test cells: " + ", ".join(edited))
    if run.returncode == 2:
        details.append("feedback page written by the pipeline: nbgrader generate_feedback failed")
    details += task["notes"]
    row = _row(student_id, cell_rows, status, details,
               " | ".join(Path(p).name for p in task["files"].values()))

    feedback_dir = out / "feedback" / student_id
    feedback_dir.mkdir(parents=True, exist_ok=True)
    log_tail = "\n".join(run.output.replace(str(course), "<course>").splitlines()[-20:])
    for name in task["notebooks"]:
        page = course / "feedback" / STUDENT / assignment / f"{name}.html"
        if status == "ok" and page.exists():
            shutil.copyfile(page, feedback_dir / f"{name}.html")
        else:
            (feedback_dir / f"{name}.html").write_text(_feedback_page(
                student_id, assignment, name, status, details[0], float(row["score"]),
                float(row["max_score"]), log_tail if status != "ok" else ""))
    return {"row": row, "cells": cell_rows}


def _unrun(student_id: str, status: str, reason: str, submitted: str, cells: list[GradedCell],
           assignment: str, notebooks: list[str], out: Path) -> dict:
    """Row, zero cells and an explanatory feedback page for a submission nbgrader never graded."""
    cell_rows = _cell_rows(student_id, cells, {})
    row = _row(student_id, cell_rows, status, [reason], submitted)
    feedback_dir = out / "feedback" / student_id
    feedback_dir.mkdir(parents=True, exist_ok=True)
    for name in notebooks:
        (feedback_dir / f"{name}.html").write_text(_feedback_page(
            student_id, assignment, name, status, reason, 0, float(row["max_score"]), ""))
    return {"row": row, "cells": cell_rows, "seconds": 0.0}


# --- the batch ------------------------------------------------------------------------------------

def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _report(result: dict) -> None:
    row = result["row"]
    print(f"{row['student_id']:<24} {row['score']:>6}/{row['max_score']:<6} {row['status']:<8}"
          f"{result['seconds']:6.1f} s  {row['detail']}", flush=True)


def _run_batch(tasks: list[dict], workers: int, cells: list[GradedCell], assignment: str,
               notebooks: list[str], out: Path) -> list[dict]:
    """Grade the tasks in worker processes, printing one line per student as each finishes."""
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(grade_submission, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except Exception as error:   # noqa: BLE001 - a bug here must not lose a row
                result = _unrun(task["student_id"], "error",
                                f"the grading pipeline failed: {error!r}"[:200],
                                " | ".join(Path(p).name for p in task["files"].values()),
                                cells, assignment, notebooks, out)
            results.append(result)
            _report(result)
    return results


def grade(root: Path, assignment: str, submissions: Path, out: Path, *, workers: int = 2,
          timeout: float = 900, cell_timeout: int | None = None, keep_work: bool = False) -> int:
    """Grade every ``submissions/<student_id>/`` folder; 0 when each student got a row."""
    start = time.monotonic()
    notebooks = [p.stem for p in source_notebooks(root, assignment)]
    if not notebooks or not submissions.is_dir():
        print(f"grade: no notebook in {root / 'solutions' / assignment}" if not notebooks
              else f"grade: {submissions} is not a folder")
        return 1
    jobs = find_jobs(submissions, notebooks)
    for loose in sorted(submissions.glob("*.ipynb")):
        print(f"grade: ignored {loose.name}: each submission goes in a <student_id>/ folder")
    out.mkdir(parents=True, exist_ok=True)
    import nbgrader.api  # noqa: F401 - imported once here, inherited by the forked workers
    with tempfile.TemporaryDirectory(prefix="autograde-template-") as tmp:
        try:
            template, cells = build_template(root, assignment, Path(tmp))
        except RuntimeError as error:
            print(f"grade: cannot build the template course: {error}")
            return 1
        print(f"grade: {assignment} ({', '.join(notebooks)}), {len(jobs)} submission(s), "
              f"{sum(c.max_score for c in cells if not c.manual):g} autograded points, "
              f"template ready in {time.monotonic() - start:.1f} s", flush=True)
        results = [_unrun(job.student_id, "missing", "no .ipynb file in the submission folder",
                          "", cells, assignment, notebooks, out) for job in jobs if not job.files]
        for result in results:
            _report(result)
        runnable = [job for job in jobs if job.files]
        workers = max(1, min(workers, len(runnable)))
        tasks = [{"student_id": job.student_id, "files": job.files, "notes": job.notes,
                  "assignment": assignment, "template": str(template), "out": str(out),
                  "cells": [asdict(c) for c in cells], "notebooks": notebooks,
                  "timeout": timeout, "cell_timeout": cell_timeout,
                  "threads": max(1, (os.cpu_count() or 1) // workers),
                  "keep_work": keep_work} for job in runnable]
        results += _run_batch(tasks, workers, cells, assignment, notebooks, out)
    results.sort(key=lambda r: r["row"]["student_id"])
    _write_csv(out / "grades.csv", GRADES_COLUMNS, [r["row"] for r in results])
    _write_csv(out / "cells.csv", CELLS_COLUMNS, [c for r in results for c in r["cells"]])
    statuses = [r["row"]["status"] for r in results]
    print(f"grade: {len(results)} row(s) in {out / 'grades.csv'} ("
          + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
          + f"), feedback in {out / 'feedback'}, total {time.monotonic() - start:.1f} s")
    return 0 if len(results) == len(jobs) else 1
