"""``grade``: autograde every submission of one assignment, each in a jail, points from outside.

1. Once per batch: the release is generated from ``solutions/`` (nbgrader ``generate_assignment``),
   and the instructor's solution runs through the same path as a student (step 2) with the full
   test cells: its journal is the *golden* journal (``journal.py``). A solution that fails its own
   tests stops the batch.
2. Per submission, in a worker process: the notebook is repaired (deleted or edited test cells
   and stripped metadata restored from the release), every locked cell is taken from the
   instructor's source with ``expected`` values removed from the test cells
   (``journal.graded_notebook``), and the notebook runs in a jail (``sandbox.py``: no gradebook,
   solutions, other submissions or network; its own user, memory and process limits) under a
   wall-clock limit (killed with everything it started past it) and a per-cell limit.
3. Back outside, only two files come out of the jail: the executed notebook and the journal. A
   test cell scores its points when it ran without error and its journal matches the golden one
   (``journal.verdict``); warnings and anything written to stderr play no part.
4. The feedback page is written here (``feedback.py``): the verdicts and teaching messages, the
   released (visible) test source, and no hidden test or solution line. Only the rows come back
   to the parent process, which writes ``grades.csv`` and ``cells.csv``.
"""
from __future__ import annotations

import copy
import csv
import html
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import feedback, journal, sandbox
from .course import run_process
from .notebooks import (grade_id, is_code_answer, is_grade, is_solution, is_test, read_notebook,
                        source_notebooks, write_notebook)
from .release import ReleaseError, build_release

CELL_TIMEOUT = 120              # s for one cell; past it the cell is interrupted, the rest runs
GRADED, EXECUTED = "graded.ipynb", "executed.ipynb"   # the files that go in and come out of a jail
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

def build_template(root: Path, assignment: str, work: Path, *, cell_timeout: int,
                   limits: sandbox.Limits) -> dict:
    """Release, source and golden journal of each notebook, and the graded cells (see step 1)."""
    try:
        release_dir = build_release(root, assignment, work)
    except ReleaseError as error:
        raise RuntimeError(str(error)) from error
    from .samples import solved
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
        golden_nb = journal.graded_notebook(solved(read_notebook(release_path), source_nb),
                                            source_nb, with_expected=True)
        run = run_in_jail(golden_nb, work / f"golden-{path.stem}", timeout=600,
                          cell_timeout=cell_timeout, threads=os.cpu_count() or 1, limits=limits)
        if run.executed is None:
            raise RuntimeError(f"the solution of {path.name} did not run: {run.reason}\n"
                               f"{run.log[-2000:]}")
        for cell in run.executed.cells:
            error = journal.cell_error(cell) if is_test(cell) else None
            if error:
                raise RuntimeError(f"the solution fails its own test cell {grade_id(cell)} in "
                                   f"{path.name}: {error[0]}: {error[1][:300]}")
        notebooks[path.stem] = {"source": str(path), "release": str(release_path),
                                "golden": journal.read_journal(run.journal)}
    return {"cells": cells, "notebooks": notebooks}


# --- running a notebook in a jail -----------------------------------------------------------------

@dataclass
class JailRun:
    executed: object | None        # the executed notebook (untrusted), None if none came back
    journal: str                   # the journal text (untrusted)
    status: str                    # ok | timeout | memory | error
    reason: str
    log: str
    seconds: float


def _jail_env(threads: int, journal_path: str, home: str) -> dict[str, str]:
    """The whole environment of the student's kernel: nothing of the grader's own is passed."""
    threads_s = str(max(1, threads))
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin",
                                 "/bin"]),
        "HOME": f"{home}/home", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "JUPYTER_RUNTIME_DIR": f"{home}/jupyter", "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": f"{home}/ipython", "MPLCONFIGDIR": f"{home}/matplotlib",
        "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # Parallel submissions share the cores: one kernel must not grab all of them.
        "OMP_NUM_THREADS": threads_s, "MKL_NUM_THREADS": threads_s,
        "COURSE_SCALE": "cpu",              # grade at the scale the tests were written for
        "COURSE_GRADING_JOURNAL": journal_path,
    }


def _unjailed_limits(limits: sandbox.Limits):
    def apply() -> None:
        import resource
        mb = 1 << 20
        for which, value in ((resource.RLIMIT_DATA, limits.memory_mb * mb),
                             (resource.RLIMIT_FSIZE, limits.file_mb * mb),
                             (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))
    return apply


def run_in_jail(nb, host_dir: Path, *, timeout: float, cell_timeout: int, threads: int,
                limits: sandbox.Limits) -> JailRun:
    """Execute ``nb`` with ``autograder.execute`` in a jail around ``host_dir`` (or without a
    jail, with rlimits only, where ``sandbox.probe`` found none)."""
    host_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(host_dir, 0o700)
    (host_dir / "in").mkdir(exist_ok=True)
    write_notebook(nb, host_dir / "in" / GRADED)
    command = [sys.executable, "-m", "autograder.execute", GRADED, EXECUTED,
               "--cell-timeout", str(cell_timeout)]
    support = sandbox.probe()
    if support.jail:
        uid = 60000 + os.getpid() % 30000 if support.as_root else None
        argv = sandbox.jail_command(host_dir, command, uid=uid, limits=limits,
                                    collect=[EXECUTED, journal.JOURNAL])
        env = _jail_env(threads, f"{sandbox.WORK}/{journal.JOURNAL}", "/tmp")
        cwd, out, preexec = host_dir, host_dir / "out", None
    else:
        env = _jail_env(threads, str(host_dir / "in" / journal.JOURNAL), str(host_dir / "in"))
        for name in ("home", "jupyter", "ipython", "matplotlib"):
            (host_dir / "in" / name).mkdir(exist_ok=True)
        argv, cwd, out = command, host_dir / "in", host_dir / "in"
        preexec = _unjailed_limits(limits)
    run = run_process(argv, cwd, timeout=timeout, env=env, log_path=host_dir / "run.log",
                      memory_mb=int(limits.memory_mb * 1.5), preexec_fn=preexec)
    log = run.output.replace(str(host_dir), "<work>")
    text = ""
    journal_file = out / journal.JOURNAL
    if journal_file.is_file() and not journal_file.is_symlink():
        text = journal_file.read_bytes()[: limits.collect_mb << 20].decode("utf-8", "replace")
    executed = None
    executed_file = out / EXECUTED
    if executed_file.is_file() and not executed_file.is_symlink() and not run.timed_out \
            and not run.memory_exceeded:
        try:
            executed = read_notebook(executed_file)
        except Exception:   # noqa: BLE001 - whatever came back is untrusted
            executed = None
    if run.timed_out:
        status, reason = "timeout", f"grading stopped after {timeout:g} s"
    elif run.memory_exceeded:
        status, reason = "memory", f"stopped: more than {int(limits.memory_mb * 1.5)} MB in use"
    elif executed is None:
        lines = [line for line in log.splitlines() if line.strip()]
        status, reason = "error", (lines[-1] if lines else "the notebook did not run")[:200]
    else:
        status, reason = "ok", ""
    return JailRun(executed, text, status, reason, log, run.seconds)


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


def _prepare(src: Path, release_nb) -> tuple[object, list[str], list[str]]:
    """The submission as a repaired notebook (see restore_grade_cells); raises if unreadable."""
    nb = read_notebook(src)
    restored, edited = restore_grade_cells(nb, release_nb)
    return nb, restored, edited


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
        "memory": "Your notebook used more memory than grading allows, so it was stopped. Look "
                  "for a tensor far larger than the exercise needs.",
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
               scores: dict[tuple[str, str], float]) -> list[dict]:
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


def grade_submission(task: dict) -> dict:
    """Grade one student's files, each notebook in its own jail; return row and cells."""
    start = time.monotonic()
    out = Path(task["out"])
    if task["keep_work"]:
        work = out / "work" / task["student_id"]
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="autograde-"))
    try:
        result = _grade_in(work, task, start)
    finally:
        if not task["keep_work"]:
            shutil.rmtree(work, ignore_errors=True)
    return {**result, "seconds": time.monotonic() - start}


def _grade_in(work: Path, task: dict, start: float) -> dict:
    student_id, assignment, out = task["student_id"], task["assignment"], Path(task["out"])
    cells = [GradedCell(**c) for c in task["cells"]]
    limits = sandbox.Limits(**task["limits"])
    scores: dict[tuple[str, str], float] = {}
    details: list[str] = []
    statuses: list[str] = []
    pages: dict[str, str] = {}
    for name, src in task["files"].items():
        info = task["notebooks"][name]
        source_nb, release_nb = read_notebook(Path(info["source"])), read_notebook(
            Path(info["release"]))
        try:
            nb, restored, edited = _prepare(Path(src), release_nb)
        except Exception as error:   # noqa: BLE001 - not a notebook: a row and an explanation
            statuses.append("error")
            details.append(f"{name}.ipynb is not a readable notebook: {type(error).__name__}")
            continue
        if restored:
            details.append("restored deleted cells: " + ", ".join(restored))
        if edited:
            details.append("restored edited test cells: " + ", ".join(edited))
        graded = journal.graded_notebook(nb, source_nb)
        remaining = max(1.0, task["timeout"] - (time.monotonic() - start))
        run = run_in_jail(graded, work / name, timeout=remaining,
                          cell_timeout=task["cell_timeout"], threads=task["threads"],
                          limits=limits)
        executed = run.executed
        if executed is not None:
            try:
                journal.check_executed(graded, executed)
            except journal.NotebookMismatch as error:
                executed, run.status, run.reason = None, "error", \
                    f"the executed notebook came back altered ({error})"
        statuses.append(run.status)
        if executed is None:
            details.append(run.reason)
            continue
        student = journal.read_journal(run.journal)
        verdicts = {}
        for index, cell in enumerate(executed.cells):
            gid = grade_id(cell)
            if not is_test(cell) or gid in verdicts:
                continue
            points = next(c.max_score for c in cells if c.notebook == name and c.grade_id == gid)
            verdicts[gid] = journal.verdict(gid, points, journal.cell_error(cell),
                                            info["golden"].get(gid, []), student.get(gid, []))
            scores[(name, gid)] = verdicts[gid].score
        failed = [f"{v.grade_id} ({v.messages[0][:80]})" for v in verdicts.values()
                  if not v.passed]
        details.append(f"{sum(v.passed for v in verdicts.values())}/{len(verdicts)} test cells "
                       f"passed" + (f" in {name}" if len(task["files"]) > 1 else ""))
        if failed:
            details.append("failed: " + ", ".join(failed))
        timeouts = [grade_id(c) or f"cell {i}" for i, c in enumerate(executed.cells)
                    if (journal.cell_error(c) or ("",))[0] == "CellTimeoutError"]
        if timeouts:
            details.append("cell timeout: " + ", ".join(timeouts))
        released = {grade_id(c): c.source for c in release_nb.cells if is_test(c)}
        secrets = journal.hidden_lines(source_nb, graded, release_nb)
        pages[name] = feedback.render(student_id, assignment, name, executed, released,
                                      verdicts, secrets, task["notes"])
        (out / "autograded" / student_id).mkdir(parents=True, exist_ok=True)
        write_notebook(executed, out / "autograded" / student_id / f"{name}.ipynb")

    status = next((s for s in ("timeout", "memory", "error") if s in statuses), "ok")
    details += task["notes"]
    cell_rows = _cell_rows(student_id, cells, scores)
    row = _row(student_id, cell_rows, status, details,
               " | ".join(Path(p).name for p in task["files"].values()))
    feedback_dir = out / "feedback" / student_id
    feedback_dir.mkdir(parents=True, exist_ok=True)
    for name in task["notebook_names"]:
        page = pages.get(name) or _feedback_page(
            student_id, assignment, name, status if status != "ok" else "missing",
            details[0] if details else "not graded", float(row["score"]),
            float(row["max_score"]), "")
        (feedback_dir / f"{name}.html").write_text(page)
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
          timeout: float = 900, cell_timeout: int | None = None, keep_work: bool = False,
          limits: sandbox.Limits | None = None) -> int:
    """Grade every ``submissions/<student_id>/`` folder; 0 when each student got a row."""
    start = time.monotonic()
    limits = limits or sandbox.Limits()
    cell_timeout = cell_timeout or CELL_TIMEOUT
    notebooks = [p.stem for p in source_notebooks(root, assignment)]
    if not notebooks or not submissions.is_dir():
        print(f"grade: no notebook in {root / 'solutions' / assignment}" if not notebooks
              else f"grade: {submissions} is not a folder")
        return 1
    jobs = find_jobs(submissions, notebooks)
    for loose in sorted(submissions.glob("*.ipynb")):
        print(f"grade: ignored {loose.name}: each submission goes in a <student_id>/ folder")
    out.mkdir(parents=True, exist_ok=True)
    print(f"grade: {sandbox.probe().summary()}", flush=True)
    import nbclient  # noqa: F401 - imported once here, inherited by the forked workers
    with tempfile.TemporaryDirectory(prefix="autograde-template-") as tmp:
        os.chmod(tmp, 0o700)
        try:
            template = build_template(root, assignment, Path(tmp), cell_timeout=cell_timeout,
                                      limits=limits)
        except RuntimeError as error:
            print(f"grade: cannot build the template: {error}")
            return 1
        cells = template["cells"]
        print(f"grade: {assignment} ({', '.join(notebooks)}), {len(jobs)} submission(s), "
              f"{sum(c.max_score for c in cells if not c.manual):g} autograded points, "
              f"template and solution run ready in {time.monotonic() - start:.1f} s", flush=True)
        results = [_unrun(job.student_id, "missing", "no .ipynb file in the submission folder",
                          "", cells, assignment, notebooks, out) for job in jobs if not job.files]
        for result in results:
            _report(result)
        runnable = [job for job in jobs if job.files]
        workers = max(1, min(workers, len(runnable)))
        tasks = [{"student_id": job.student_id, "files": job.files, "notes": job.notes,
                  "assignment": assignment, "out": str(out), "notebooks": template["notebooks"],
                  "notebook_names": notebooks, "cells": [asdict(c) for c in cells],
                  "timeout": timeout, "cell_timeout": cell_timeout, "limits": asdict(limits),
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
