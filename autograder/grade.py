"""``grade``: autograde every submission of one assignment, each in a jail, points from outside.

The stages, one file each: ``submissions.py`` (find, read and repair what was handed in),
``template.py`` (release and solution runs, once per batch), ``run.py`` (one notebook in a jail),
``journal.py`` (what the kernel runs, and the verdicts), ``feedback.py`` (the pages),
``results.py`` (grades.csv and cells.csv), this file (one submission in a worker, and the batch).

Trust model (``autograder/README.md``): everything produced inside a student's jail (the journal,
the executed notebook, exit codes, log lines) and every file name inside a submission is
attacker-controlled. The grader trusts only what it computes itself and recorded values that
cannot be produced without solving the exercise.

1. Once per batch: the release is generated from ``solutions/`` (nbgrader ``generate_assignment``),
   and the instructor's solution runs twice, side by side: with the full test cells (its journal
   is the *golden* journal, ``journal.py``) and as a student's notebook is run (its graded copy
   must score full marks against the golden journal). Either failing stops the batch.
2. Per submission, in a worker process: the files are found and read without following links
   (``submissions.py``), the notebook is repaired, every locked cell is taken from the
   instructor's source and each test cell is cut down to the calls and the records
   (``journal.graded_notebook``: no expected value or oracle is sent), and the notebook runs in
   a jail (``sandbox.py``: no gradebook, solutions, other submissions or network; its own user,
   a memory cgroup, process limits) under a wall-clock limit and a per-cell limit.
3. Back outside, only two files come out of the jail. The executor's exit status is checked; a
   test cell scores its points when its journal matches the golden one (``journal.verdict``);
   cell identities come from the graded copy sent in, never from the file that came back. Reading
   what came back runs under the same wall-clock limit.
4. The feedback page is written here (``feedback.py``) with every student-produced text passed
   through ``redact.Redactor``; only the rows come back to the parent process, which writes
   ``grades.csv`` and ``cells.csv`` through ``redact.csv_cell``.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import feedback, journal, sandbox
from .notebooks import grade_id, is_test, read_notebook, source_notebooks, write_notebook
from .redact import Redactor, csv_cell, printable
from .results import Result, write_results
from .run import JailRun, batch_uids, read_executed, run_in_jail
from .submissions import find_jobs, read_submission, restore_grade_cells
from .template import GradedCell, TemplateNotebook, build_template

CELL_TIMEOUT = 120              # s for one cell; past it the cell is interrupted, the rest runs


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to grade one student's folder (sent to another process)."""
    student_id: str
    files: dict[str, str]                       # notebook name -> submitted file
    notes: list[str]
    assignment: str
    out: Path
    notebooks: dict[str, TemplateNotebook]
    cells: list[GradedCell]
    timeout: float
    cell_timeout: int
    limits: sandbox.Limits
    threads: int
    uid: int
    keep_work: bool

    @property
    def submitted(self) -> str:
        return " | ".join(Path(p).name for p in self.files.values())


@dataclass
class NotebookGrade:
    status: str = "ok"
    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    page: str | None = None


# --- one submission (runs in a worker process) ----------------------------------------------------

class _PastDeadline(Exception):
    pass


@contextmanager
def deadline(seconds: float):
    """Raise ``_PastDeadline`` in this block past ``seconds`` (SIGALRM; main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise _PastDeadline()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def _result(student_id: str, cells: list[GradedCell], scores: dict[tuple[str, str], float],
            status: str, details: list[str], submitted: str) -> Result:
    cell_rows = _cell_rows(student_id, cells, scores)
    auto = [r for r in cell_rows if r["kind"] == "auto"]
    manual = [r for r in cell_rows if r["kind"] == "manual"]
    row = {"student_id": student_id, "score": f"{sum(float(r['score']) for r in auto):g}",
           "max_score": f"{sum(float(r['max_score']) for r in auto):g}",
           "manual_max_score": f"{sum(float(r['max_score']) for r in manual):g}",
           "status": status, "detail": "; ".join(details), "submitted": submitted}
    return Result(row, cell_rows)


def grade_submission(task: Task) -> Result:
    """Grade one student's files, each notebook in its own jail."""
    start = time.monotonic()
    if task.keep_work:
        work = task.out / "work" / task.student_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="autograde-"))
    try:
        result = _grade_in(work, task, start)
    finally:
        if not task.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


def _grade_notebook(name: str, src: str, work: Path, task: Task, start: float) -> NotebookGrade:
    """Status, scores, details and feedback page of one notebook of a submission."""
    info = task.notebooks[name]
    source_nb, release_nb = read_notebook(Path(info.source)), read_notebook(Path(info.release))
    result = NotebookGrade()
    try:
        nb = read_submission(Path(src))
        repairs = restore_grade_cells(nb, release_nb)
    except Exception as error:   # noqa: BLE001 - not a notebook: a row and an explanation
        result.status = "error"
        result.details.append(f"{name}.ipynb is not a readable notebook: {type(error).__name__}")
        return result
    result.details += repairs.notes()
    graded = journal.graded_notebook(nb, source_nb)
    remaining = max(1.0, task.timeout - (time.monotonic() - start))
    run = run_in_jail(graded, work / name, timeout=remaining, cell_timeout=task.cell_timeout,
                      threads=task.threads, limits=task.limits, uid=task.uid)
    result.status = run.status
    if run.status != "ok":
        result.details.append(run.reason)
        return result
    try:
        with deadline(max(2.0, task.timeout - (time.monotonic() - start))):
            _score_run(name, graded, run, source_nb, release_nb, info, task, result)
    except _PastDeadline:
        result.status, result.scores, result.page = "timeout", {}, None
        result.details.append("reading what the notebook produced ran past the time limit")
    return result


def _score_run(name: str, graded, run: JailRun, source_nb, release_nb, info: TemplateNotebook,
               task: Task, result: NotebookGrade) -> None:
    """Verdicts from the journal, feedback from the executed notebook (both untrusted)."""
    redactor = Redactor(journal.hidden_lines(source_nb, graded, release_nb))
    student = journal.read_journal(run.journal)
    executed = read_executed(run)
    if executed is not None:
        try:
            journal.check_executed(graded, executed)
        except journal.NotebookMismatch as error:
            result.details.append(f"the executed notebook came back altered ({error}); "
                                  "feedback shows no outputs")
            executed = None
    shown = executed if executed is not None else graded
    points = {(c.notebook, c.grade_id): c.max_score for c in task.cells}
    verdicts = {}
    for index, cell in enumerate(graded.cells):          # identities from what was sent
        gid = grade_id(cell)
        if not is_test(cell) or gid in verdicts:
            continue
        error = journal.cell_error(executed.cells[index]) if executed is not None else None
        verdicts[gid] = journal.verdict(gid, points[(name, gid)], error, info.golden.get(gid, []),
                                        student.get(gid, []), clean=redactor.clean)
        result.scores[(name, gid)] = verdicts[gid].score
    failed = [f"{v.grade_id} ({v.messages[0][:80]})" for v in verdicts.values() if not v.passed]
    result.details.append(f"{sum(v.passed for v in verdicts.values())}/{len(verdicts)} test "
                          f"cells passed" + (f" in {name}" if len(task.files) > 1 else ""))
    if failed:
        result.details.append("failed: " + ", ".join(failed))
    timeouts = [grade_id(c) or f"cell {i}" for i, c in enumerate(shown.cells)
                if (journal.cell_error(c) or ("",))[0] == "CellTimeoutError"]
    if timeouts:
        result.details.append("cell timeout: " + ", ".join(timeouts))
    released = {grade_id(c): c.source for c in release_nb.cells if is_test(c)}
    result.page = feedback.render(task.student_id, task.assignment, name, shown, released,
                                  verdicts, redactor, task.notes)
    folder = task.out / "autograded" / task.student_id
    folder.mkdir(parents=True, exist_ok=True)
    write_notebook(shown, folder / f"{name}.ipynb")


def _grade_in(work: Path, task: Task, start: float) -> Result:
    scores: dict[tuple[str, str], float] = {}
    details: list[str] = []
    statuses: list[str] = []
    pages: dict[str, str] = {}
    for name, src in task.files.items():
        graded = _grade_notebook(name, src, work, task, start)
        statuses.append(graded.status)
        details += graded.details
        if graded.status == "ok":
            scores.update(graded.scores)
            if graded.page is not None:
                pages[name] = graded.page
    status = next((s for s in ("timeout", "memory", "error") if s in statuses), "ok")
    details += task.notes
    result = _result(task.student_id, task.cells, scores, status, details, task.submitted)
    _write_pages(task.out, task.student_id, task.assignment, list(task.notebooks), pages,
                 status if status != "ok" else "missing",
                 details[0] if details else "not graded", result)
    return result


def _write_pages(out: Path, student_id: str, assignment: str, notebooks: list[str],
                 pages: dict[str, str], status: str, reason: str, result: Result) -> None:
    """One feedback page per notebook: the graded one, or a page saying why there is none."""
    folder = out / "feedback" / student_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in notebooks:
        page = pages.get(name) or feedback.status_page(
            student_id, assignment, name, status, reason, float(result.row["score"]),
            float(result.row["max_score"]))
        (folder / f"{name}.html").write_text(page, encoding="utf-8")


def _unrun(student_id: str, status: str, reason: str, submitted: str, cells: list[GradedCell],
           assignment: str, notebooks: list[str], out: Path) -> Result:
    """Row, zero cells and an explanatory feedback page for a submission that never ran."""
    result = _result(student_id, cells, {}, status, [reason], submitted)
    _write_pages(out, student_id, assignment, notebooks, {}, status, reason, result)
    return result


# --- the batch ------------------------------------------------------------------------------------

def _report(result: Result) -> None:
    row = result.row
    print(printable(f"{row['student_id']:<24} {row['score']:>6}/{row['max_score']:<6} "
                    f"{row['status']:<8}{result.seconds:6.1f} s  {csv_cell(row['detail'])}"),
          flush=True)


def _run_batch(tasks: list[Task], workers: int) -> list[Result]:
    """Grade the tasks in worker processes, printing one line per student as each finishes."""
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(grade_submission, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except Exception as error:   # noqa: BLE001 - a bug here must not lose a row
                result = _unrun(task.student_id, "error",
                                f"the grading pipeline failed: {type(error).__name__}",
                                task.submitted, task.cells, task.assignment,
                                list(task.notebooks), task.out)
            results.append(result)
            _report(result)
    return results


def _select(jobs: list, only: list[str] | None, submissions: Path) -> list | None:
    """The jobs of ``only`` (all when None); None, after saying which, when one has no folder."""
    if only is None:
        return jobs
    absent = sorted(set(only) - {job.student_id for job in jobs})
    if absent:
        print(printable(f"grade: --only: no folder {', '.join(absent)} in {submissions}"))
        return None
    return [job for job in jobs if job.student_id in only]


def grade(root: Path, assignment: str, submissions: Path, out: Path, *, workers: int = 2,
          timeout: float = 900, cell_timeout: int | None = None, keep_work: bool = False,
          limits: sandbox.Limits | None = None, only: list[str] | None = None,
          merge: bool = False) -> int:
    """Grade every ``submissions/<student_id>/`` folder, or those named in ``only``; with
    ``only`` or ``merge`` their rows replace theirs in OUT's grades.csv and cells.csv and every
    other row stays. 0 when each student graded got a row."""
    start = time.monotonic()
    limits = limits or sandbox.Limits()
    cell_timeout = cell_timeout or CELL_TIMEOUT
    notebooks = [p.stem for p in source_notebooks(root, assignment)]
    if not notebooks or not submissions.is_dir():
        print(f"grade: no notebook in {root / 'solutions' / assignment}" if not notebooks
              else f"grade: {submissions} is not a folder")
        return 1
    jobs = _select(find_jobs(submissions, notebooks), only, submissions)
    if jobs is None:
        return 1
    for loose in sorted(submissions.glob("*.ipynb")):
        print(printable(f"grade: ignored {loose.name}: each submission goes in a <student_id>/ "
                        "folder"))
    out.mkdir(parents=True, exist_ok=True)
    for job in jobs:             # an executed notebook of an earlier run must not outlive it
        shutil.rmtree(out / "autograded" / job.student_id, ignore_errors=True)
    print(f"grade: {sandbox.probe().summary()}", flush=True)
    import nbclient  # noqa: F401 - imported once here, inherited by the forked workers
    uids = batch_uids(len(jobs) + 1)
    with tempfile.TemporaryDirectory(prefix="autograde-template-") as tmp:
        os.chmod(tmp, 0o700)
        try:
            template = build_template(root, assignment, Path(tmp), cell_timeout=cell_timeout,
                                      limits=limits, uid=uids[0])
        except RuntimeError as error:
            print(f"grade: cannot build the template: {error}")
            return 1
        print(f"grade: {assignment} ({', '.join(notebooks)}), {len(jobs)} submission(s), "
              f"{sum(c.max_score for c in template.cells if not c.manual):g} autograded points, "
              f"template and solution run ready in {time.monotonic() - start:.1f} s", flush=True)
        results = [_unrun(job.student_id, "error" if job.refused else "missing",
                          job.refused or "no .ipynb file in the submission folder", "",
                          template.cells, assignment, notebooks, out)
                   for job in jobs if not job.files]
        for result in results:
            _report(result)
        runnable = [(job, uid) for job, uid in zip(jobs, uids[1:]) if job.files]
        workers = max(1, min(workers, len(runnable)))
        tasks = [Task(job.student_id, job.files, job.notes, assignment, out, template.notebooks,
                      template.cells, timeout, cell_timeout, limits,
                      max(1, (os.cpu_count() or 1) // workers), uid, keep_work)
                 for job, uid in runnable]
        results += _run_batch(tasks, workers)
    write_results(results, out, start, merge=merge or only is not None)
    return 0 if len(results) == len(jobs) else 1
