"""Running one notebook in a jail: what goes in, what comes out, and how it ended.

``run_in_jail`` writes the graded notebook into a fresh folder, runs ``python -m autograder.execute``
on it inside the jail of ``sandbox.py`` (or, where the machine allows none, with resource limits
only), in a memory cgroup of its own where the machine has one, under a wall-clock limit, and
returns a ``JailRun``: the journal text and the folder the executed notebook came back to (both
untrusted: see ``journal.py``), and a status the grader decided itself (``ok``, ``timeout``,
``memory``, ``error``) from the time, the memory cgroup and the executor's exit status.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import journal, sandbox
from .course import run_process
from .memory import MemoryCgroup
from .notebooks import write_notebook
from .submissions import read_submission

GRADED, EXECUTED = "graded.ipynb", "executed.ipynb"   # the files that go in and come out of a jail
EXECUTOR_OK = (0, 3)            # autograder.execute: 0 done, 3 the kernel died (cells marked)
UID_BASE = 100000               # jail users: UID_BASE + 4096 * (grader pid % 4096) + submission


def batch_uids(count: int) -> list[int]:
    """One jail uid per submission of this batch (and the first for the solution runs)."""
    base = UID_BASE + 4096 * (os.getpid() % 4096)
    return [base + i % 4096 for i in range(count)]


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
    group = MemoryCgroup.create(f"autograde-{os.getpid()}-{time.monotonic_ns()}",
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


def read_executed(run: JailRun):
    """The executed notebook that came back (untrusted), or None."""
    path = run.out / EXECUTED
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return read_submission(path)
    except Exception:   # noqa: BLE001 - whatever came back is untrusted
        return None
