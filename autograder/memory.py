"""Memory limits a submission cannot step around: a cgroup per submission, where the machine has one.

``run.run_in_jail`` puts each notebook's processes in a ``MemoryCgroup`` (``sandbox.probe`` says
whether one can be made here). Without one, ``course.run_process``'s watchdog counts resident
memory plus the shared memory held through file descriptors, and the jail caps tmpfs and SysV.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


class MemoryCgroup:
    """A memory cgroup of its own for one submission, under the grader's own cgroup.

    The kernel charges a cgroup for everything its processes make resident, shared memory
    included (memfd, tmpfs and /dev/shm pages, SysV segments): what ``RLIMIT_DATA`` and a resident
    set watchdog both miss. Past the limit the kernel reclaims, then kills inside the group
    (``hit_limit`` reports it). cgroup v2 (``memory.max``) or v1 (``memory.limit_in_bytes`` and,
    where swap accounting exists, ``memory.memsw.limit_in_bytes``); ``create`` returns None when
    neither can be written (no controller, not root, a read-only ``/sys/fs/cgroup``).
    """

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    @staticmethod
    def _own_dirs() -> list[tuple[Path, int]]:
        dirs = []
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            number, controllers, where = (line.split(":", 2) + ["", ""])[:3]
            if number == "0" and controllers == "":
                for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                    if (mount / "cgroup.controllers").is_file() and "memory" in \
                            (mount / "cgroup.controllers").read_text().split():
                        dirs.append((mount / where.lstrip("/"), 2))
            elif "memory" in controllers.split(","):
                dirs.append((Path("/sys/fs/cgroup/memory") / where.lstrip("/"), 1))
        return sorted(dirs, key=lambda d: -d[1])

    @classmethod
    def create(cls, name: str, memory_mb: int) -> "MemoryCgroup | None":
        limit = str(memory_mb << 20)
        for parent, version in cls._own_dirs():
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            group = cls(path, version)
            try:
                if version == 2:
                    (path / "memory.max").write_text(limit)
                    if (path / "memory.swap.max").exists():
                        (path / "memory.swap.max").write_text("0")
                else:
                    (path / "memory.limit_in_bytes").write_text(limit)
                    if (path / "memory.memsw.limit_in_bytes").exists():
                        (path / "memory.memsw.limit_in_bytes").write_text(limit)
                return group
            except OSError:
                group.remove()
        return None

    def join(self) -> None:
        """Move the calling process into the group (in a child, before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def hit_limit(self) -> bool:
        """Whether the kernel killed a process of the group for memory (reclaiming page cache at
        the limit, which an honest run may cause, does not count)."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            fields = dict(line.split()[:2] for line in
                          (self.path / name).read_text().splitlines() if line.strip())
            return int(fields.get("oom_kill", 0)) > 0
        except (OSError, ValueError):
            return False

    def remove(self) -> None:
        """Kill what is left in the group and delete it (retried while processes exit)."""
        for _ in range(50):
            try:
                pids = (self.path / "cgroup.procs").read_text().split()
            except OSError:
                return
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def memory_cgroup_available() -> bool:
    group = MemoryCgroup.create(f"autograde-probe-{os.getpid()}", 64)
    if group is None:
        return False
    group.remove()
    return True
