"""Temporary nbgrader course directories and nbgrader run as a subprocess with a hard time limit.

Every nbgrader command the pipeline runs gets a fresh course directory (``nbgrader_config.py``,
``source/<assignment>``, its own ``gradebook.db``), so nothing is shared between runs and the
repository is never an nbgrader course itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .notebooks import IGNORED_FILES

CONFIG_FILE = Path(__file__).with_name("nbgrader_config.py")


@dataclass
class NbgraderRun:
    returncode: int | None   # None when killed on timeout
    output: str              # stdout and stderr together
    timed_out: bool
    seconds: float
    memory_exceeded: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.memory_exceeded


def make_course(course_dir: Path, solutions_dir: Path, assignment: str) -> Path:
    """A course directory holding the config and ``source/<assignment>`` copied from solutions/."""
    course_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFIG_FILE, course_dir / "nbgrader_config.py")
    shutil.copytree(solutions_dir / assignment, course_dir / "source" / assignment,
                    ignore=shutil.ignore_patterns(*IGNORED_FILES))
    return course_dir


def grading_env(course_dir: Path, threads: int = 1) -> dict[str, str]:
    """The environment of the nbgrader release step (generate_assignment): quiet, headless.

    Student notebooks get their own, minimal environment: ``grade._jail_env``."""
    env = dict(os.environ)
    # nbgrader runs the `alembic` executable when it creates a gradebook: the venv's bin first.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update({
        "PYTHONWARNINGS": "ignore",      # warnings on stderr would zero a passing test cell
        "TQDM_DISABLE": "1",             # so would progress bars
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # Parallel submissions share the cores: one kernel must not grab all of them.
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "JUPYTER_RUNTIME_DIR": str(course_dir / ".runtime"),
    })
    env.setdefault("COURSE_SCALE", "cpu")  # grade at the scale the tests were written for
    return env


def _kill(processes: list[psutil.Process]) -> None:
    for proc in processes:
        try:
            proc.kill()   # psutil checks the pid still names the same process (no reuse)
        except psutil.NoSuchProcess:
            pass


def generate_assignment(course_dir: Path, assignment: str, *, timeout: float = 600) -> NbgraderRun:
    """nbgrader ``generate_assignment`` in ``course_dir``: ``release/`` and ``gradebook.db``."""
    return run_module(["autograder.nbgrader_job", "generate_assignment", assignment], course_dir,
                      timeout=timeout)


def run_module(args: list[str], course_dir: Path, *, timeout: float,
               env: dict[str, str] | None = None, poll: float = 0.2) -> NbgraderRun:
    """``python -m ARGS`` in ``course_dir``; killed with all its children after ``timeout`` s."""
    env = env if env is not None else grading_env(course_dir)
    log_path = course_dir / f".nbgrader-{args[1] if len(args) > 1 else args[0]}.log"
    return run_process([sys.executable, "-m", *args], course_dir, env=env, timeout=timeout,
                       log_path=log_path, poll=poll)


def _tree_rss(parent: psutil.Process, seen: dict[int, psutil.Process]) -> int:
    """Resident memory of the tree plus the shared memory it holds through file descriptors
    (memfd, deleted tmpfs files, /dev/shm), which no resident set counts until it is mapped."""
    total, files = 0, set()
    for proc in [parent, *seen.values()]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
        total += _held_shared_memory(proc.pid, files)
    return total


def _held_shared_memory(pid: int, seen: set[tuple[int, int]]) -> int:
    total = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(link)
            if not (target.startswith(("/memfd:", "/dev/shm/")) or target.endswith("(deleted)")):
                continue
            info = os.stat(link)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def run_process(argv: list[str], cwd: Path, *, timeout: float, env: dict[str, str],
                log_path: Path, memory_mb: int | None = None, poll: float = 0.2,
                preexec_fn=None) -> NbgraderRun:
    """Run ``argv``; kill it with all its descendants past ``timeout`` s or ``memory_mb`` of RSS.

    Kernels start their own session, so killing the process group is not enough: every
    descendant seen while it runs is remembered and killed at the end if still alive (a kernel
    stuck on a timeout, a process the student's code left behind). ``memory_exceeded`` is set
    when the resident memory of the whole tree went past ``memory_mb``.
    """
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=preexec_fn)
        parent = psutil.Process(proc.pid)
        seen: dict[int, psutil.Process] = {}
        timed_out = memory = False
        while proc.poll() is None:
            try:
                seen.update((child.pid, child) for child in parent.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
            if memory_mb is not None and _tree_rss(parent, seen) > memory_mb << 20:
                memory = True
            if memory or time.monotonic() - start > timeout:
                timed_out = not memory
                _kill([parent, *seen.values()])
                proc.wait()
                break
            time.sleep(poll)
        _kill(list(seen.values()))
    output = log_path.read_text(errors="replace")
    return NbgraderRun(None if (timed_out or memory) else proc.returncode, output, timed_out,
                       time.monotonic() - start, memory)


def last_error_line(output: str) -> str:
    """The most telling line of an nbgrader log: the last exception other than nbgrader's own
    "see the traceback above", else the last ERROR message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head \
                and not head.endswith("NbGraderException"):
            return line
    for line in reversed(lines):
        if "[ERROR]" in line and "There was an error processing" not in line \
                and "Please see" not in line:
            return line.split("[ERROR]", 1)[1].strip()
    return lines[-1] if lines else "nbgrader printed nothing"
