"""The jail one submission runs in: Linux namespaces, a minimal read-only root, another user.

    python -m autograder.sandbox HOST_DIR [--uid N] [--memory-mb M] ... -- COMMAND ...

is started by ``jail_command`` under ``unshare --mount --net --pid --fork`` (plus ``--user
--map-root-user`` when the grader is not root). It runs as process 1 of the new PID namespace and:

1. builds a new root on a tmpfs holding only what the notebook needs, bind-mounted read-only: the
   system (``/usr``, ``/etc``), the Python installation, the virtual environment, ``course_lib``
   and ``autograder``. Nothing else of the grader's disk exists inside: not the gradebook, not
   ``solutions/`` or ``.git``, not the other submissions, not the output folder;
2. gives it a private ``/proc`` (only the jail's processes), a few device nodes, an empty
   ``/tmp`` and ``/submission`` (tmpfs, size-capped) into which the files of ``HOST_DIR/in`` are
   copied;
3. brings up the loopback interface of the new, empty network namespace (the kernel and its client
   talk over it); there is no other interface, so nothing outside the jail can be reached;
4. starts COMMAND in ``/submission`` as an unprivileged user (``--uid``, root only), with
   ``no_new_privs`` and resource limits (data segment, processes, file size, no core dumps);
5. when COMMAND ends, copies the regular files named by ``--collect`` from ``/submission`` back to
   ``HOST_DIR/out`` (size-capped, symbolic links refused) and exits, which kills whatever the
   student left running (the PID namespace dies with its process 1).

``probe()`` says which of these the machine allows (``AUTOGRADER_SANDBOX=off`` turns the jail
off, for timing it); ``python -m autograder grade`` prints it and
warns when it has to run submissions without a jail (no ``unshare``, namespaces forbidden, not
Linux). The memory limit is also watched from outside (``course.run_module``), which works
everywhere.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import fcntl
import os
import resource
import shutil
import socket
import stat
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
DEVICES = ("null", "zero", "full", "random", "urandom")
WORK = "/submission"               # the working directory inside the jail
OPEN_FILES = 1024                  # RLIMIT_NOFILE: with file_mb, bounds what memfds can hold


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 4096          # RLIMIT_DATA of every process, and the outside RSS watchdog
    processes: int = 256           # RLIMIT_NPROC of the jail's user (threads count)
    file_mb: int = 256             # RLIMIT_FSIZE: largest file the submission may write
    work_mb: int = 512             # size of the /submission and /tmp tmpfs
    collect_mb: int = 64           # largest file copied back out of the jail


@dataclass
class Support:
    """What ``probe`` found: the jail works (and how), or why not."""
    jail: bool
    as_root: bool = False
    memory_cgroup: bool = False
    reason: str = ""
    enforced: list[str] = field(default_factory=list)
    not_enforced: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.jail:
            return (f"WARNING: no sandbox ({self.reason}). Student code runs as the grader's user: "
                    "it can read and write the grader's files and reach the network. Only the "
                    "time limits and the outside memory watchdog apply. Grade on a Linux machine "
                    "where `unshare` works (as root, or with unprivileged user namespaces).")
        text = "sandbox: " + "; ".join(self.enforced)
        if self.not_enforced:
            text += ". NOT enforced: " + "; ".join(self.not_enforced)
        return text


# --- the outside: build the command, probe --------------------------------------------------------

def read_only_paths() -> list[str]:
    """Host paths bound read-only into every jail (existing ones only, no duplicates)."""
    candidates = ["/usr", "/etc", sys.base_prefix, sys.prefix, str(REPO / "course_lib"),
                  str(REPO / "autograder")]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = Path("/") / name
        if path.exists() and not path.is_symlink():
            candidates.append(str(path))
    out: list[str] = []
    for path in candidates:
        real = os.path.realpath(path)
        if os.path.exists(path) and path not in out:
            out.append(path)
        if real != path and os.path.exists(real) and real not in out:
            out.append(real)
    return out


def jail_command(host_dir: Path, command: list[str], *, uid: int | None, limits: Limits,
                 collect: list[str]) -> list[str]:
    """The argv that runs ``command`` in a jail around ``host_dir`` (see the module docstring)."""
    unshare = shutil.which("unshare") or "unshare"
    ns = [unshare, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        ns[1:1] = ["--user", "--map-root-user"]
    args = [sys.executable, "-I", str(Path(__file__).resolve()), str(host_dir),
            "--memory-mb", str(limits.memory_mb), "--processes", str(limits.processes),
            "--file-mb", str(limits.file_mb), "--work-mb", str(limits.work_mb),
            "--collect-mb", str(limits.collect_mb)]
    if uid is not None:
        args += ["--uid", str(uid)]
    for name in collect:
        args += ["--collect", name]
    for path in read_only_paths():
        args += ["--ro", path]
    return ns + args + ["--", *command]


_probe_cache: Support | None = None


def probe(refresh: bool = False) -> Support:
    """Try the jail once on this machine (about 0.3 s); cached for the process."""
    global _probe_cache
    if _probe_cache is None or refresh:
        _probe_cache = _probe()
    return _probe_cache


def _probe() -> Support:
    if os.environ.get("AUTOGRADER_SANDBOX", "").lower() in ("0", "off", "no"):
        return Support(False, reason="turned off by AUTOGRADER_SANDBOX=off")
    if not sys.platform.startswith("linux"):
        return Support(False, reason=f"not Linux ({sys.platform})")
    if shutil.which("unshare") is None:
        return Support(False, reason="the `unshare` program (util-linux) is not installed")
    as_root = os.geteuid() == 0
    words, error = _try_jail(as_root)
    if error:
        return Support(False, reason=f"the jail did not start: {error}")
    return _describe_jail(*words, as_root=as_root)


def _try_jail(as_root: bool) -> tuple[list[str], str]:
    """Run a probe script in a jail: (its uid, whether it sees the repository, whether the
    network answers), or an error line."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="autograde-probe-") as tmp:
        host = Path(tmp)
        (host / "in").mkdir()
        script = ("import os, socket, sys\n"
                  "s = socket.socket(); s.settimeout(2)\n"
                  "try:\n    s.connect(('1.1.1.1', 53)); net = 'reachable'\n"
                  "except OSError:\n    net = 'unreachable'\n"
                  "print(os.getuid(), os.path.exists(sys.argv[1]), net)\n")
        cmd = jail_command(host, [sys.executable, "-I", "-c", script, str(REPO / "solutions")],
                           uid=60999 if as_root else None, limits=Limits(), collect=[])
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return [], str(error)
    words = run.stdout.split()
    if run.returncode != 0 or len(words) != 3:
        return [], (run.stderr.strip().splitlines() or ["no output"])[-1]
    return words, ""


def _describe_jail(uid: str, sees_repo: str, net: str, *, as_root: bool) -> Support:
    """What the probe's answers say is enforced, and what is not."""
    support = Support(True, as_root=as_root)
    support.enforced.append("private mount, network, PID, IPC and UTS namespaces")
    support.enforced.append("read-only minimal root: system, Python, venv, course_lib, autograder"
                            if sees_repo == "False" else "minimal root (REPO VISIBLE: check)")
    support.enforced.append("no network" if net == "unreachable" else "network REACHABLE")
    if as_root and uid == "60999":
        support.enforced.append("runs as an unprivileged user, one uid per submission")
    else:
        support.not_enforced.append("separate user (grader not root: the student code runs as "
                                    "the grader's user mapped into a user namespace)")
    support.enforced.append("rlimits: data segment, processes, open files, file size, no core "
                            "dumps; time watched from outside")
    from .memory import memory_cgroup_available   # here: this file also runs as a script
    support.memory_cgroup = memory_cgroup_available()
    if support.memory_cgroup:
        support.enforced.append("memory: a cgroup per submission (shared memory, memfd and tmpfs "
                                "pages counted)")
    else:
        support.not_enforced.append("memory cgroup (none writable here): memory is capped by "
                                    "RLIMIT_DATA, tmpfs sizes, SysV limits and a watchdog that "
                                    "counts resident and fd-held shared memory every 0.2 s")
    support.not_enforced.append("CPU share between parallel submissions (threads are capped, not "
                                "cgroup-limited)")
    return support


# --- the inside: process 1 of the jail ------------------------------------------------------------

def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {source} on {target}: {os.strerror(error)}")


def _bind_read_only(libc, source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(libc, source, target, None, MS_BIND | MS_REC)
    st = os.statvfs(source)
    keep = (MS_NOSUID if st.f_flag & os.ST_NOSUID else 0) | \
           (MS_NODEV if st.f_flag & os.ST_NODEV else 0) | \
           (MS_NOEXEC if st.f_flag & os.ST_NOEXEC else 0)
    _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | keep)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, request)[:18])[1]   # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"lo", flags | 1))            # SIOCSIFFLAGS


def _build_root(libc, root: str, read_only: list[str], work_mb: int) -> None:
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    # Scratch space first, so that a read-only path under /tmp (a venv in a CI checkout) is
    # bound on top of it and stays visible.
    for name, size in (("dev/shm", 256), ("tmp", work_mb), (WORK[1:], work_mb)):
        os.makedirs(f"{root}/{name}", exist_ok=True)
        _mount(libc, "tmpfs", f"{root}/{name}", "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={size}m,mode=1777")
    for path in read_only:
        _bind_read_only(libc, path, root + path)
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / name
        if host.is_symlink() and not os.path.lexists(f"{root}/{name}"):
            os.symlink(os.readlink(host), f"{root}/{name}")
    os.makedirs(f"{root}/dev", exist_ok=True)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{root}/dev/{name}", "a").close()
            _mount(libc, f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{link}")
    os.makedirs(f"{root}/proc", exist_ok=True)
    _mount(libc, "proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _copy_in(host_in: int, work: str, uid: int | None) -> None:
    for name in os.listdir(host_in):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=host_in)
        with os.fdopen(fd, "rb") as src, open(f"{work}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst)
        if uid is not None:
            os.chown(f"{work}/{name}", uid, uid)


def _copy_out(work: str, host_out: int, names: list[str], cap: int) -> None:
    for name in names:
        try:
            fd = os.open(f"{work}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue                                 # missing, or a symbolic link: not collected
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                continue
            data = src.read(cap + 1)
        if len(data) > cap:
            data = b""                               # too large: reported as missing
            name = name + ".too-large"
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                      dir_fd=host_out)
        with os.fdopen(out, "wb") as dst:
            dst.write(data)


def _limit_shared_memory(mb: int) -> None:
    """System V shared memory of the jail's own IPC namespace capped at ``mb`` in all."""
    page = os.sysconf("SC_PAGE_SIZE")
    for name, value in (("shmmax", mb << 20), ("shmall", (mb << 20) // page), ("shmmni", 64)):
        try:
            Path(f"/proc/sys/kernel/{name}").write_text(str(value))
        except OSError:
            pass                       # a read-only /proc/sys: the cgroup and tmpfs caps remain


def _drop(uid: int | None, args) -> None:
    """In the child, just before exec: other user, no new privileges, resource limits."""
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    mb = 1 << 20
    for limit, value in ((resource.RLIMIT_DATA, args.memory_mb * mb),
                         (resource.RLIMIT_NPROC, args.processes),
                         (resource.RLIMIT_FSIZE, args.file_mb * mb),
                         (resource.RLIMIT_NOFILE, OPEN_FILES),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))


def _arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The jail's options, then the command after ``--``."""
    parser = argparse.ArgumentParser(prog="autograder.sandbox")
    parser.add_argument("host_dir")
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb)
    parser.add_argument("--processes", type=int, default=Limits.processes)
    parser.add_argument("--file-mb", type=int, default=Limits.file_mb)
    parser.add_argument("--work-mb", type=int, default=Limits.work_mb)
    parser.add_argument("--collect-mb", type=int, default=Limits.collect_mb)
    parser.add_argument("--collect", action="append", default=[])
    parser.add_argument("--ro", action="append", default=[])
    split = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:split]), argv[split + 1:]


def _run_command(command: list[str], args: argparse.Namespace, host_out: int) -> int:
    """Fork the command as the student's user; as process 1, reap every orphan until it ends."""
    child = os.fork()
    if child == 0:
        try:
            os.close(host_out)
            _drop(args.uid, args)
            os.execvpe(command[0], command, os.environ)
        except BaseException as error:  # noqa: BLE001 - report and leave the child
            print(f"autograder.sandbox: cannot start {command[0]}: {error}", file=sys.stderr)
        os._exit(127)
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            return os.waitstatus_to_exitcode(wait_status)


def main(argv: list[str] | None = None) -> int:
    args, command = _arguments(sys.argv[1:] if argv is None else argv)
    if os.getpid() != 1 or not command:
        print("autograder.sandbox: run through jail_command (process 1 of a new PID namespace)",
              file=sys.stderr)
        return 2

    libc = _libc()
    host = Path(args.host_dir)
    root = str(host / "root")
    os.makedirs(root, exist_ok=True)
    host_in = os.open(host / "in", os.O_RDONLY | os.O_DIRECTORY)
    os.makedirs(host / "out", exist_ok=True)
    host_out = os.open(host / "out", os.O_RDONLY | os.O_DIRECTORY)
    _build_root(libc, root, args.ro, args.work_mb)
    _loopback_up()
    os.chroot(root)
    os.chdir(WORK)
    _limit_shared_memory(args.work_mb)
    _copy_in(host_in, WORK, args.uid)
    for name in ("home", "jupyter", "ipython", "matplotlib"):
        os.makedirs(f"/tmp/{name}", exist_ok=True)
        if args.uid is not None:
            os.chown(f"/tmp/{name}", args.uid, args.uid)
    os.close(host_in)
    status = _run_command(command, args, host_out)
    _copy_out(WORK, host_out, args.collect, args.collect_mb << 20)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
