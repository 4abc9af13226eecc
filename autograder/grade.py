"""``grade``: autograde every submission of one assignment, each in a jail, points from outside.

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

import csv
import html
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from . import feedback, journal, sandbox
from .course import run_process
from .notebooks import (grade_id, is_grade, is_solution, is_test, read_notebook, solved,
                        source_notebooks, write_notebook)
from .redact import Redactor, csv_cell, printable
from .release import ReleaseError, build_release
from .submissions import find_jobs, read_submission, restore_grade_cells

CELL_TIMEOUT = 120              # s for one cell; past it the cell is interrupted, the rest runs
GRADED, EXECUTED = "graded.ipynb", "executed.ipynb"   # the files that go in and come out of a jail
EXECUTOR_OK = (0, 3)            # autograder.execute: 0 done, 3 the kernel died (cells marked)
UID_BASE = 100000               # jail users: UID_BASE + 4096 * (grader pid % 4096) + submission
GRADES_COLUMNS = ["student_id", "score", "max_score", "manual_max_score", "status", "detail",
                  "submitted"]
CELLS_COLUMNS = ["student_id", "notebook", "grade_id", "kind", "score", "max_score"]


@dataclass(frozen=True)
class GradedCell:
    notebook: str
    grade_id: str
    max_score: float
    manual: bool          # a written answer graded by a person, not by tests


def batch_uids(count: int) -> list[int]:
    """One jail uid per submission of this batch (and the first for the solution runs)."""
    base = UID_BASE + 4096 * (os.getpid() % 4096)
    return [base + i % 4096 for i in range(count)]


# --- the template course --------------------------------------------------------------------------

def build_template(root: Path, assignment: str, work: Path, *, cell_timeout: int,
                   limits: sandbox.Limits, uid: int | None = None) -> dict:
    """Release, source and golden journal of each notebook, and the graded cells (see step 1)."""
    try:
        release_dir = build_release(root, assignment, work)
    except ReleaseError as error:
        raise RuntimeError(str(error)) from error
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
        answer = solved(read_notebook(release_path), source_nb)
        try:
            runs = {"golden": journal.graded_notebook(answer, source_nb, with_expected=True),
                    "graded": journal.graded_notebook(answer, source_nb)}
        except journal.GradedCopyError as error:
            raise RuntimeError(f"{path.name}: {error}") from error
        threads = max(1, (os.cpu_count() or 1) // 2)
        with ThreadPoolExecutor(2) as pool:     # two jails side by side: the cores are idle now
            done = {kind: pool.submit(run_in_jail, nb, work / f"{kind}-{path.stem}", timeout=600,
                                      cell_timeout=cell_timeout, threads=threads, limits=limits,
                                      uid=uid)
                    for kind, nb in runs.items()}
            done = {kind: future.result() for kind, future in done.items()}
        golden = _golden_journal(path.name, done["golden"])
        _check_graded_copy(path.name, runs["graded"], done["graded"], golden)
        notebooks[path.stem] = {"source": str(path), "release": str(release_path),
                                "golden": golden}
    return {"cells": cells, "notebooks": notebooks}


def _golden_journal(name: str, run: "JailRun") -> dict[str, list[dict]]:
    executed = _read_executed(run) if run.status == "ok" else None
    if executed is None:
        raise RuntimeError(f"the solution of {name} did not run: {run.reason}\n{run.log[-2000:]}")
    for cell in executed.cells:
        error = journal.cell_error(cell) if is_test(cell) else None
        if error:
            raise RuntimeError(f"the solution fails its own test cell {grade_id(cell)} in "
                               f"{name}: {error[0]}: {error[1][:300]}")
    return journal.read_journal(run.journal)


def _check_graded_copy(name: str, sent, run: "JailRun", golden: dict) -> None:
    """The solution, run as a student's notebook is, must score every test cell."""
    if run.status != "ok":
        raise RuntimeError(f"the graded copy of the solution of {name} did not run: {run.reason}")
    student = journal.read_journal(run.journal)
    for cell in sent.cells:
        if is_test(cell):
            gid = grade_id(cell)
            result = journal.verdict(gid, 1.0, None, golden.get(gid, []), student.get(gid, []))
            if not result.passed:
                raise RuntimeError(
                    f"the solution of {name} fails test cell {gid} as graded for students "
                    f"({result.messages[0]}): a statement removed with the expected values "
                    "changed the test's inputs (a random draw?); compute it inside the expected "
                    "argument")


# --- running a notebook in a jail -----------------------------------------------------------------

@dataclass
class JailRun:
    out: Path                      # where the executed notebook came back (untrusted)
    journal: str                   # the journal text (untrusted)
    status: str                    # ok | timeout | memory | error
    reason: str                    # written by the grader, never taken from the log
    log: str                       # staff only (the run log is written by the student's code)
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
                             (resource.RLIMIT_NOFILE, sandbox.OPEN_FILES),
                             (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))
    return apply


def _in_order(*steps):
    def run() -> None:
        for step in steps:
            if step is not None:
                step()
    return run


def run_in_jail(nb, host_dir: Path, *, timeout: float, cell_timeout: int, threads: int,
                limits: sandbox.Limits, uid: int | None = None) -> JailRun:
    """Execute ``nb`` with ``autograder.execute`` in a jail around ``host_dir`` (or without a
    jail, with rlimits only, where ``sandbox.probe`` found none), in a memory cgroup of its own
    where the machine has one."""
    host_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(host_dir, 0o700)
    (host_dir / "in").mkdir(exist_ok=True)
    write_notebook(nb, host_dir / "in" / GRADED)
    command = [sys.executable, "-m", "autograder.execute", GRADED, EXECUTED,
               "--cell-timeout", str(cell_timeout)]
    support = sandbox.probe()
    if support.jail:
        uid = (uid or batch_uids(1)[0]) if support.as_root else None
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
    group = sandbox.MemoryCgroup.create(f"autograde-{os.getpid()}-{time.monotonic_ns()}",
                                        limits.memory_mb) if support.memory_cgroup else None
    try:
        run = run_process(argv, cwd, timeout=timeout, env=env, log_path=host_dir / "run.log",
                          memory_mb=int(limits.memory_mb * 1.5),
                          preexec_fn=_in_order(group and group.join, preexec))
        killed_for_memory = run.memory_exceeded or (group is not None and group.hit_limit())
    finally:
        if group is not None:
            group.remove()
    log = run.output.replace(str(host_dir), "<work>")
    text = ""
    journal_file = out / journal.JOURNAL
    if journal_file.is_file() and not journal_file.is_symlink():
        text = journal_file.read_bytes()[: limits.collect_mb << 20].decode("utf-8", "replace")
    if run.timed_out:
        status, reason = "timeout", f"grading stopped after {timeout:g} s"
    elif killed_for_memory:
        status, reason = "memory", f"stopped: more than {limits.memory_mb} MB in use"
    elif run.returncode not in EXECUTOR_OK:
        status, reason = "error", (f"the notebook did not run to the end: the grading process "
                                   f"exited with status {run.returncode}")
    else:
        status, reason = "ok", ""
    return JailRun(out, text, status, reason, log, run.seconds)


def _read_executed(run: JailRun):
    """The executed notebook that came back (untrusted), or None."""
    path = run.out / EXECUTED
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return read_submission(path)
    except Exception:   # noqa: BLE001 - whatever came back is untrusted
        return None


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


def _feedback_page(student_id: str, assignment: str, notebook: str, status: str, reason: str,
                   score: float, max_score: float) -> str:
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
    esc = lambda text: html.escape(printable(text))  # noqa: E731
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>Feedback: {esc(assignment)}/{esc(notebook)}</title></head>\n"
            f"<body>\n<h1>{esc(assignment)} / {esc(notebook)}: {esc(student_id)}</h1>\n"
            f"<p><b>Status: {status}</b> ({esc(reason)})</p>\n<p>{explain}</p>\n"
            f"<p>Autograded score: {score:g} / {max_score:g}. Contact the course staff if you "
            f"think this is wrong.</p>\n</body></html>\n")


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


def _grade_notebook(name: str, src: str, work: Path, task: dict, start: float) -> dict:
    """Status, scores, details and feedback page of one notebook of a submission."""
    info = task["notebooks"][name]
    source_nb, release_nb = read_notebook(Path(info["source"])), read_notebook(
        Path(info["release"]))
    result = {"status": "ok", "scores": {}, "details": [], "page": None}
    try:
        nb = read_submission(Path(src))
        repairs = restore_grade_cells(nb, release_nb)
    except Exception as error:   # noqa: BLE001 - not a notebook: a row and an explanation
        result["status"] = "error"
        result["details"].append(f"{name}.ipynb is not a readable notebook: "
                                 f"{type(error).__name__}")
        return result
    result["details"] += repairs.notes()
    graded = journal.graded_notebook(nb, source_nb)
    remaining = max(1.0, task["timeout"] - (time.monotonic() - start))
    run = run_in_jail(graded, work / name, timeout=remaining, cell_timeout=task["cell_timeout"],
                      threads=task["threads"], limits=sandbox.Limits(**task["limits"]),
                      uid=task["uid"])
    result["status"] = run.status
    if run.status != "ok":
        result["details"].append(run.reason)
        return result
    try:
        with deadline(max(2.0, task["timeout"] - (time.monotonic() - start))):
            _score_run(name, graded, run, source_nb, release_nb, info, task, result)
    except _PastDeadline:
        result.update(status="timeout", scores={}, page=None)
        result["details"].append("reading what the notebook produced ran past the time limit")
    return result


def _score_run(name: str, graded, run: JailRun, source_nb, release_nb, info: dict, task: dict,
               result: dict) -> None:
    """Verdicts from the journal, feedback from the executed notebook (both untrusted)."""
    redactor = Redactor(journal.hidden_lines(source_nb, graded, release_nb))
    student = journal.read_journal(run.journal)
    executed = _read_executed(run)
    if executed is not None:
        try:
            journal.check_executed(graded, executed)
        except journal.NotebookMismatch as error:
            result["details"].append(f"the executed notebook came back altered ({error}); "
                                     "feedback shows no outputs")
            executed = None
    shown = executed if executed is not None else graded
    cells = {(c["notebook"], c["grade_id"]): c["max_score"] for c in task["cells"]}
    verdicts = {}
    for index, cell in enumerate(graded.cells):          # identities from what was sent
        gid = grade_id(cell)
        if not is_test(cell) or gid in verdicts:
            continue
        error = journal.cell_error(executed.cells[index]) if executed is not None else None
        verdicts[gid] = journal.verdict(gid, cells[(name, gid)], error,
                                        info["golden"].get(gid, []), student.get(gid, []),
                                        clean=redactor.clean)
        result["scores"][(name, gid)] = verdicts[gid].score
    failed = [f"{v.grade_id} ({v.messages[0][:80]})" for v in verdicts.values() if not v.passed]
    result["details"].append(f"{sum(v.passed for v in verdicts.values())}/{len(verdicts)} test "
                             f"cells passed" + (f" in {name}" if len(task["files"]) > 1 else ""))
    if failed:
        result["details"].append("failed: " + ", ".join(failed))
    timeouts = [grade_id(c) or f"cell {i}" for i, c in enumerate(shown.cells)
                if (journal.cell_error(c) or ("",))[0] == "CellTimeoutError"]
    if timeouts:
        result["details"].append("cell timeout: " + ", ".join(timeouts))
    released = {grade_id(c): c.source for c in release_nb.cells if is_test(c)}
    result["page"] = feedback.render(task["student_id"], task["assignment"], name, shown,
                                     released, verdicts, redactor, task["notes"])
    folder = Path(task["out"]) / "autograded" / task["student_id"]
    folder.mkdir(parents=True, exist_ok=True)
    write_notebook(shown, folder / f"{name}.ipynb")


def _grade_in(work: Path, task: dict, start: float) -> dict:
    student_id, out = task["student_id"], Path(task["out"])
    cells = [GradedCell(**c) for c in task["cells"]]
    scores: dict[tuple[str, str], float] = {}
    details: list[str] = []
    statuses: list[str] = []
    pages: dict[str, str] = {}
    for name, src in task["files"].items():
        result = _grade_notebook(name, src, work, task, start)
        statuses.append(result["status"])
        details += result["details"]
        if result["status"] == "ok":
            scores.update(result["scores"])
        if result["page"] is not None and result["status"] == "ok":
            pages[name] = result["page"]
    status = next((s for s in ("timeout", "memory", "error") if s in statuses), "ok")
    details += task["notes"]
    cell_rows = _cell_rows(student_id, cells, scores)
    row = _row(student_id, cell_rows, status, details,
               " | ".join(Path(p).name for p in task["files"].values()))
    feedback_dir = out / "feedback" / student_id
    feedback_dir.mkdir(parents=True, exist_ok=True)
    for name in task["notebook_names"]:
        page = pages.get(name) or _feedback_page(
            student_id, task["assignment"], name, status if status != "ok" else "missing",
            details[0] if details else "not graded", float(row["score"]), float(row["max_score"]))
        (feedback_dir / f"{name}.html").write_text(page, encoding="utf-8")
    return {"row": row, "cells": cell_rows}


def _unrun(student_id: str, status: str, reason: str, submitted: str, cells: list[GradedCell],
           assignment: str, notebooks: list[str], out: Path) -> dict:
    """Row, zero cells and an explanatory feedback page for a submission that never ran."""
    cell_rows = _cell_rows(student_id, cells, {})
    row = _row(student_id, cell_rows, status, [reason], submitted)
    feedback_dir = out / "feedback" / student_id
    feedback_dir.mkdir(parents=True, exist_ok=True)
    for name in notebooks:
        (feedback_dir / f"{name}.html").write_text(_feedback_page(
            student_id, assignment, name, status, reason, 0, float(row["max_score"])),
            encoding="utf-8")
    return {"row": row, "cells": cell_rows, "seconds": 0.0}


# --- the batch ------------------------------------------------------------------------------------

def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Every cell through ``redact.csv_cell``: any file name, no formula, one line."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)


def _report(result: dict) -> None:
    row = result["row"]
    print(printable(f"{row['student_id']:<24} {row['score']:>6}/{row['max_score']:<6} "
                    f"{row['status']:<8}{result['seconds']:6.1f} s  {csv_cell(row['detail'])}"),
          flush=True)


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
                                f"the grading pipeline failed: {type(error).__name__}",
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
        print(printable(f"grade: ignored {loose.name}: each submission goes in a <student_id>/ "
                        "folder"))
    out.mkdir(parents=True, exist_ok=True)
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
        cells = template["cells"]
        print(f"grade: {assignment} ({', '.join(notebooks)}), {len(jobs)} submission(s), "
              f"{sum(c.max_score for c in cells if not c.manual):g} autograded points, "
              f"template and solution run ready in {time.monotonic() - start:.1f} s", flush=True)
        results = [_unrun(job.student_id, "error" if job.refused else "missing",
                          job.refused or "no .ipynb file in the submission folder", "", cells,
                          assignment, notebooks, out) for job in jobs if not job.files]
        for result in results:
            _report(result)
        runnable = [(job, uid) for job, uid in zip(jobs, uids[1:]) if job.files]
        workers = max(1, min(workers, len(runnable)))
        tasks = [{"student_id": job.student_id, "files": job.files, "notes": job.notes,
                  "assignment": assignment, "out": str(out), "notebooks": template["notebooks"],
                  "notebook_names": notebooks, "cells": [asdict(c) for c in cells],
                  "timeout": timeout, "cell_timeout": cell_timeout, "limits": asdict(limits),
                  "threads": max(1, (os.cpu_count() or 1) // workers), "uid": uid,
                  "keep_work": keep_work} for job, uid in runnable]
        results += _run_batch(tasks, workers, cells, assignment, notebooks, out)
    results.sort(key=lambda r: printable(r["row"]["student_id"]))
    _write_csv(out / "grades.csv", GRADES_COLUMNS, [r["row"] for r in results])
    _write_csv(out / "cells.csv", CELLS_COLUMNS, [c for r in results for c in r["cells"]])
    statuses = [r["row"]["status"] for r in results]
    print(printable(f"grade: {len(results)} row(s) in {out / 'grades.csv'} (")
          + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
          + f"), feedback in {printable(out / 'feedback')}, total {time.monotonic() - start:.1f} s")
    return 0 if len(results) == len(jobs) else 1
