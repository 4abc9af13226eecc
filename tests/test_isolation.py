"""Grading you can trust: every attack a submission can make from inside its kernel, graded in one
batch next to an honest solution, and what each one got.

Each fixture is the instructor's solution with ONE answer cell (``uniformity``, the last exercise,
2 points; or a cell the student added) replaced by an attack. Attacks that try to *read* a secret
define the right answer only if the read succeeded, so a leak would show up as points. Run with
``-s`` to print the table of attacks and scores.

The jail is Linux-only (namespaces, see ``autograder/sandbox.py``); these tests require it.
"""
from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from autograder import memory, sandbox
from autograder.notebooks import (HIDDEN_TESTS, SOLUTION, grade_id, notebook_bytes,
                                  read_notebook, region_flags, without_markers)
from autograder.release import build_release
from autograder.samples import solved

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "01_infonce"
SOURCE = REPO / "solutions" / ASSIGNMENT / "infonce.ipynb"
TARGET, TARGET_TEST = "solution_uniformity", "test_uniformity"
SLOW = pytest.mark.slow


def _correct_uniformity() -> str:
    cell = next(c for c in read_notebook(SOURCE).cells if grade_id(c) == TARGET)
    return without_markers(cell.source, SOLUTION)


WRONG_UNIFORMITY = "def uniformity(z, t=2.0):\n    return torch.tensor(-1.0)\n"


def attacks(ctx: dict) -> dict[str, tuple[str, str]]:
    """fixture -> (what it tries, the source of its uniformity cell). ``ctx`` holds host paths."""
    right = _correct_uniformity()
    return {
        "reads_secrets": ("read the solutions, the gradebook, the output folder, another "
                          "student's notebook, the repository's .git", textwrap.dedent(f"""
            import glob, os
            _targets = [{str(SOURCE)!r}, {ctx['other']!r}, {ctx['out']!r} + "/grades.csv",
                        {str(REPO / '.git' / 'HEAD')!r}, {str(REPO / 'solutions')!r}]
            _targets += glob.glob("/tmp/autograde-*/**/gradebook.db", recursive=True)
            _targets += glob.glob("/tmp/autograde-*/**/*.ipynb", recursive=True)
            _readable = []
            for _path in _targets:
                try:
                    if os.path.isdir(_path):
                        os.listdir(_path)
                    else:
                        open(_path, "rb").read(16)
                    _readable.append(_path)
                except OSError:
                    pass
            print("READABLE:", _readable)
            def uniformity(z, t=2.0):
                raise RuntimeError("found nothing to copy")
            if _readable:          # a leak would turn into points: take the model answer
                exec(MODEL_ANSWER)
            """).replace("MODEL_ANSWER", repr(right))),
        "writes_files": ("write into another student's folder, the output folder, solutions/, "
                         "the venv and the host's /tmp", textwrap.dedent(f"""
            _written = []
            for _path in [{ctx['other']!r}, {ctx['out']!r} + "/grades.csv",
                          {str(REPO / 'solutions' / ASSIGNMENT / 'pwned.txt')!r},
                          {os.path.join(sys.prefix, 'pwned.txt')!r}, {ctx['host_tmp']!r}]:
                try:
                    with open(_path, "a") as _f:
                        _f.write("pwned")
                    _written.append(_path)
                except OSError:
                    pass
            print("WRITTEN:", _written)
            """) + right),
        "patches_helpers": ("wrong answer, then patch torch.allclose, assert_close, numpy and "
                            "math isclose, isinstance and the course's check functions",
                            WRONG_UNIFORMITY + textwrap.dedent("""
            import builtins, math, numpy, sys, torch.testing
            import course_lib.grading as _g
            _yes = lambda *a, **k: True
            torch.allclose = torch.equal = numpy.isclose = numpy.allclose = math.isclose = _yes
            torch.testing.assert_close = lambda *a, **k: None
            _isinstance = builtins.isinstance
            def _lying_isinstance(obj, cls):
                # True for the course's checks only, so that the kernel itself keeps working.
                caller = sys._getframe(1).f_code.co_filename
                return True if "grading" in caller else _isinstance(obj, cls)
            builtins.isinstance = _lying_isinstance
            _g.check_close = _g.check_true = _g.check_shape = lambda *a, **k: None
            check_close = check_true = check_shape = lambda *a, **k: None
            """)),
        "always_equal": ("return an object equal to anything, and a tensor subclass whose "
                         "comparisons are all True", textwrap.dedent("""
            class _Anything:
                shape = ()
                requires_grad = True
                def __eq__(self, other): return True
                def __ne__(self, other): return False
                def __sub__(self, other): return self
                def __abs__(self): return self
                def __le__(self, other): return True
                def __float__(self): return 0.0
                def __bool__(self): return True
                def item(self): return 0.0
                def detach(self): return self
                def double(self): return self
                def cpu(self): return self
            class _Liar(torch.Tensor):
                def __eq__(self, other): return torch.ones_like(self, dtype=torch.bool)
            _calls = [0]
            def uniformity(z, t=2.0):
                _calls[0] += 1
                if _calls[0] % 2:
                    return _Anything()
                return torch.tensor(-1.0).as_subclass(_Liar)
            """)),
        "noisy": ("right answer that prints warnings, logging, a progress bar and raw stderr",
                  textwrap.dedent("""
            import logging, sys, warnings
            from tqdm.auto import tqdm
            warnings.warn("this API is deprecated", DeprecationWarning)
            logging.warning("something looks odd")
            for _ in tqdm(range(3), desc="warming up"):
                pass
            sys.stderr.write("Traceback (most recent call last): not really\\n")
            """) + right),
        "network": ("open a connection to a listener on the grader's 127.0.0.1, and the "
                    "internet", textwrap.dedent(f"""
            import socket
            _reached = []
            for _host, _port in [("127.0.0.1", {ctx['port']}), ("1.1.1.1", 53)]:
                try:
                    with socket.create_connection((_host, _port), timeout=2) as _s:
                        _s.sendall(b"leaked")
                        _reached.append(_host)
                except OSError:
                    pass
            print("REACHED:", _reached)
            """) + right),
        "leaks_hidden": ("print the kernel's input history and the hidden test frames' source",
                         _leaks_hidden_source()),
        "memory_and_processes": ("allocate 64 GB, fork a process that outlives the notebook, "
                                 "then answer right", textwrap.dedent(f"""
            import subprocess
            try:
                _hog = torch.empty(16 * 2**30, dtype=torch.float32)
                _hog.fill_(1.0)
                print("ALLOCATED")
            except (RuntimeError, MemoryError) as _error:
                print("ALLOCATION REFUSED:", type(_error).__name__)
            subprocess.Popen(["sleep", "{ctx['marker']}"], start_new_session=True)
            """) + right),
    }


def _leaks_hidden_source() -> str:
    """A right answer wrapped in code that prints everything of the tests it can reach."""
    right = _correct_uniformity().replace("def uniformity(", "def _right(")
    return textwrap.dedent("""
        import inspect
        print("HISTORY:", "\\n".join(In))
        """) + right + textwrap.dedent("""
        def uniformity(z, t=2.0):
            for frame in inspect.stack():
                print("FRAME:", "".join(frame.code_context or []))
                try:
                    print("SOURCE:", inspect.getsource(frame.frame))
                except (OSError, TypeError):
                    pass
            return _right(z, t)
        """)


class Listener:
    """A TCP server on the host's 127.0.0.1 that records whatever reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(100))
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The batch: the solution, an honest second student, and every attack; graded once."""
    if not sandbox.probe().jail:
        pytest.fail(f"the grading jail does not work here: {sandbox.probe().reason}")
    tmp = tmp_path_factory.mktemp("isolation")
    subs, out = tmp / "submissions", tmp / "out"
    release_nb = read_notebook(build_release(REPO, ASSIGNMENT, tmp / "release") / SOURCE.name)
    base = solved(release_nb, read_notebook(SOURCE))
    listener = Listener()
    ctx = {"other": str(subs / "honest" / "infonce.ipynb"), "out": str(out),
           "host_tmp": f"/tmp/pwned-{uuid.uuid4().hex}", "port": listener.port,
           "marker": f"{9000 + os.getpid() % 1000}.{uuid.uuid4().int % 10**6}"}
    table = attacks(ctx)
    for student in ["solution", "honest", *table]:
        nb = json.loads(notebook_bytes(base))
        if student in table:
            cell = next(c for c in nb["cells"]
                        if c["metadata"].get("nbgrader", {}).get("grade_id") == TARGET)
            cell["source"] = table[student][1]
        (subs / student).mkdir(parents=True)
        (subs / student / "infonce.ipynb").write_text(json.dumps(nb))
    other_before = Path(ctx["other"]).read_bytes()
    try:
        run = subprocess.run([sys.executable, "-m", "autograder", "grade", ASSIGNMENT, str(subs),
                              "--out", str(out), "--workers", "2", "--cell-timeout", "30"],
                             cwd=REPO, capture_output=True, text=True, timeout=900)
    finally:
        listener.close()
    print(run.stdout, run.stderr)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {r["student_id"]: r for r in _csv(out / "grades.csv")}
    cells = {}
    for row in _csv(out / "cells.csv"):
        cells.setdefault(row["student_id"], {})[row["grade_id"]] = row["score"]
    summary = ["", f"{'attack':<22} {'score':>7}  {TARGET_TEST:<16} what it tried"]
    for student in ["solution", "honest", *table]:
        summary.append(f"{student:<22} {rows[student]['score']:>3}/{rows[student]['max_score']:<3}"
                       f"  {cells[student][TARGET_TEST]:<16} "
                       f"{table[student][0] if student in table else '(no attack)'}")
    print("\n".join(summary))
    return {"rows": rows, "cells": cells, "out": out, "subs": subs, "ctx": ctx, "run": run,
            "listener": listener, "other_before": other_before, "table": table}


def _csv(path: Path) -> list[dict]:
    import csv
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _outputs(attacked, student: str) -> str:
    """The printed text of the graded notebook, cell by cell. A kernel may send one print() in
    several stream messages ("REACHED:" then " []" under load), so a cell's stream pieces are
    joined as they came, not line by line."""
    nb = read_notebook(attacked["out"] / "autograded" / student / "infonce.ipynb")
    return "\n".join("".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                              for o in c.outputs)
                      for c in nb.cells if c.cell_type == "code")


def _full(attacked, student: str) -> bool:
    row = attacked["rows"][student]
    return row["status"] == "ok" and float(row["score"]) == float(row["max_score"]) > 0


@SLOW
def test_honest_submissions_keep_full_marks_next_to_the_attacks(attacked):
    assert _full(attacked, "solution"), attacked["rows"]["solution"]
    assert _full(attacked, "honest"), attacked["rows"]["honest"]


@SLOW
def test_secrets_are_not_readable_from_the_kernel(attacked):
    assert attacked["cells"]["reads_secrets"][TARGET_TEST] == "0"
    assert "READABLE: []" in _outputs(attacked, "reads_secrets")
    others = {k: v for k, v in attacked["cells"]["reads_secrets"].items() if k != TARGET_TEST}
    assert set(others.values()) != {"0"}   # only the attacked exercise lost its points


@SLOW
def test_nothing_outside_the_jail_can_be_written(attacked):
    ctx = attacked["ctx"]
    # Only the jail's own /tmp (a private tmpfs) took the write; the host's /tmp did not.
    assert f"WRITTEN: [{ctx['host_tmp']!r}]" in _outputs(attacked, "writes_files")
    assert Path(ctx["other"]).read_bytes() == attacked["other_before"]
    assert not Path(ctx["host_tmp"]).exists()
    assert not (REPO / "solutions" / ASSIGNMENT / "pwned.txt").exists()
    assert not Path(sys.prefix, "pwned.txt").exists()
    assert "pwned" not in (attacked["out"] / "grades.csv").read_text()
    assert _full(attacked, "writes_files")            # a right answer still gets its points


@SLOW
def test_patched_comparison_helpers_gain_nothing(attacked):
    assert attacked["cells"]["patches_helpers"][TARGET_TEST] == "0"


@SLOW
def test_always_equal_objects_gain_nothing(attacked):
    assert attacked["cells"]["always_equal"][TARGET_TEST] == "0"
    page = (attacked["out"] / "feedback" / "always_equal" / "infonce.html").read_text()
    assert "wrong shape: got _Anything" in page or "wrong type" in page


@SLOW
def test_warnings_and_stderr_cost_a_right_answer_nothing(attacked):
    assert _full(attacked, "noisy"), attacked["rows"]["noisy"]


@SLOW
def test_network_is_unreachable(attacked):
    assert attacked["listener"].received == []
    assert "REACHED: []" in _outputs(attacked, "network")
    assert _full(attacked, "network")


@SLOW
def test_feedback_never_shows_hidden_tests(attacked):
    source = read_notebook(SOURCE)
    released = read_notebook(REPO / "exercises" / ASSIGNMENT / SOURCE.name)
    visible = "\n".join(cell.source for cell in released.cells)   # what the student was given
    hidden = {line.strip() for cell in source.cells
              for line, where in region_flags(cell.source, HIDDEN_TESTS)
              if where == "inside" and len(line.strip()) >= 12 and line.strip() not in visible}
    assert len(hidden) > 50
    for student in attacked["rows"]:
        page = html.unescape((attacked["out"] / "feedback" / student / "infonce.html").read_text())
        assert not [line for line in hidden if line in page], student
    page = (attacked["out"] / "feedback" / "leaks_hidden" / "infonce.html").read_text()
    assert "output removed" in page
    assert "HISTORY:" in _outputs(attacked, "leaks_hidden")     # it did print them in the kernel
    assert _full(attacked, "leaks_hidden")


@SLOW
def test_memory_is_capped_and_no_process_outlives_grading(attacked):
    text = _outputs(attacked, "memory_and_processes")
    assert "ALLOCATION REFUSED" in text and "ALLOCATED" not in text.replace("ALLOCATION", "")
    assert _full(attacked, "memory_and_processes")
    marker = attacked["ctx"]["marker"]
    alive = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    assert not alive


# --- the jail itself, without notebooks (fast) -----------------------------------------------------

def _jail(tmp_path: Path, script: str, uid: int | None = 61234) -> subprocess.CompletedProcess:
    host = tmp_path / "jail"
    (host / "in").mkdir(parents=True)
    (host / "in" / "given.txt").write_text("given")
    cmd = sandbox.jail_command(host, [sys.executable, "-I", "-c", script],
                               uid=uid if os.geteuid() == 0 else None, limits=sandbox.Limits(),
                               collect=["result.txt", "link.txt"])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_jail_sees_only_its_own_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    run = _jail(tmp_path, textwrap.dedent(f"""
        import os
        print(open("given.txt").read())
        for path in [{str(secret)!r}, {str(REPO / 'solutions')!r}, {str(REPO / '.git')!r},
                     {str(REPO / 'tests')!r}]:
            print(path, os.path.exists(path))
        import course_lib, autograder
        print("imports ok")
        """))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "given" and "imports ok" in lines
    assert all(line.endswith("False") for line in lines[1:5]), lines


def test_jail_runs_as_another_user_read_only_and_offline(tmp_path):
    listener = Listener()
    try:
        run = _jail(tmp_path, textwrap.dedent(f"""
            import os, socket, sys
            print("uid", os.getuid())
            try:
                open(os.path.join(sys.prefix, "x"), "w")
                print("venv writable")
            except OSError as e:
                print("venv read-only", e.errno)
            try:
                socket.create_connection(("127.0.0.1", {listener.port}), timeout=2)
                print("host reached")
            except OSError:
                print("host unreachable")
            open("result.txt", "w").write("result")
            os.symlink("/etc/hostname", "link.txt")
            """))
    finally:
        listener.close()
    assert run.returncode == 0, run.stderr
    if os.geteuid() == 0:
        assert "uid 61234" in run.stdout
    assert "venv read-only" in run.stdout and "host unreachable" in run.stdout, run.stdout
    assert listener.received == []
    out = tmp_path / "jail" / "out"
    assert (out / "result.txt").read_text() == "result"
    assert not (out / "link.txt").exists()          # symbolic links are not collected


def test_probe_reports_what_is_enforced():
    support = sandbox.probe()
    text = support.summary()
    assert support.jail, text
    assert "no network" in text and "read-only minimal root" in text
    assert re.search(r"NOT enforced", text)


def test_a_memory_cgroup_counts_memfd_pages_or_the_fallback_is_reported(tmp_path):
    group = memory.MemoryCgroup.create(f"autograde-test-{os.getpid()}", 256)
    if group is None:        # no writable memory controller: grade must say so, and fall back
        assert "memory cgroup (none writable here)" in sandbox.probe().summary()
        return
    script = textwrap.dedent("""
        import os
        fds = []
        for _ in range(8):                      # 8 x 64 MB of memfd pages: no RSS, no data segment
            fd = os.memfd_create("hog")
            os.write(fd, b"x" * (64 << 20))
            fds.append(fd)
        print("held", 8 * 64, "MB")
        """)
    try:
        run = subprocess.run([sys.executable, "-c", script], preexec_fn=group.join,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == -9 and "held" not in run.stdout, (run.returncode, run.stdout)
        assert group.hit_limit()
    finally:
        group.remove()
    assert not group.path.exists()


def test_the_fallback_watchdog_counts_memory_held_through_file_descriptors():
    from autograder.course import _held_shared_memory
    fd = os.memfd_create("held")
    try:
        os.write(fd, b"x" * (32 << 20))
        assert _held_shared_memory(os.getpid(), set()) >= 32 << 20
    finally:
        os.close(fd)
