"""``publish DIR``: the student-facing tree of the course, for its public repository.

Students need ``course_lib`` (installed from the tag by every Colab set-up cell), the lectures, the
released exercises, the set-up files (README, pyproject.toml, requirements/, environment.yml,
Makefile), the unit tests of the library and the benchmarks the README cites. They must not get
what grades them. Of the files git tracks, ``instructor_only`` leaves out:

- the paths of ``INSTRUCTOR_ONLY`` (each with its reason), and
- every Python file under ``tests/`` or ``benchmarks/`` that imports the grader or its test helpers
  or opens ``solutions/`` (``NEEDS_INSTRUCTOR``): such a test cannot run without what is left out;

every other tracked file is copied as it is in the working tree, except two that are trimmed: the
README loses its instructor sections (``INSTRUCTOR_SECTIONS``) and the Makefile its grader targets
(``INSTRUCTOR_TARGETS``). Publishing refuses while ``[tool.course] repository`` is the placeholder
(exit 2), and when a link points elsewhere than the setting or a released exercise holds a line
of its solution (exit 1, run ``release`` first). The written tree is scanned again
(``published_problems``): no nbgrader solution or hidden-test marker in any file, no file under a
``solutions`` folder, no Python file that imports the grader, every link at the setting; if any
is found the tree is removed and nothing is published.
"""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

from .links import CourseSetting, SettingError, link_problems, load_setting
from .notebooks import MARKERS, find_assignments

INSTRUCTOR_ONLY = (
    ("solutions/*", "the nbgrader sources: full answers and hidden tests"),
    ("autograder/*", "the grading pipeline: release, golden runs, samples, the jail"),
    ("tests/fixtures/*", "the toy assignment, an nbgrader source with solutions and hidden tests"),
    ("tests/attacks.py", "hostile submissions aimed at the grader"),
    ("tests/notebook_harness.py", "runs the solution notebooks cell by cell"),
    ("tests/test_mutations_*.py", "the mistakes each hidden test must catch"),
    ("tests/test_notebook_contract.py", "runs the solution notebooks"),
    ("benchmarks/grading.py", "times the grader"),
)
IMPORTS_GRADER = re.compile(r"^\s*(?:from|import)\s+(?:autograder|attacks|notebook_harness)\b",
                            re.M)
# A Python file of tests/ or benchmarks/ that matches this needs something left out.
NEEDS_INSTRUCTOR = re.compile(IMPORTS_GRADER.pattern + r"|[\"']solutions[\"'/]", re.M)
# README sections for instructors (their headings, after "## ").
INSTRUCTOR_SECTIONS = ("For instructors", "Adding a unit", "Publishing the course")
# Makefile targets that run the grader.
INSTRUCTOR_TARGETS = ("release", "check")


class PublishError(RuntimeError):
    """The tree cannot be published; ``status`` is the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def tracked_files(root: Path) -> list[str]:
    """What git tracks under ``root``, as POSIX paths relative to it."""
    try:
        run = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True,
                             check=False)
    except OSError as error:
        raise PublishError(f"publish needs git to list the tracked files: {error}", 2) from None
    if run.returncode != 0:
        raise PublishError(f"publish needs a git checkout at {root}: "
                           f"{run.stderr.decode(errors='replace').strip()}", 2)
    names = run.stdout.decode("utf-8", "surrogateescape").split("\0")
    return sorted(name for name in names if name)


def instructor_only(rel: str, path: Path) -> str | None:
    """Why the tracked file ``rel`` (at ``path``) stays out of the public tree; None if it goes
    in."""
    for pattern, reason in INSTRUCTOR_ONLY:
        if fnmatch.fnmatchcase(rel, pattern):
            return reason
    if rel.endswith(".py") and rel.split("/")[0] in ("tests", "benchmarks"):
        if NEEDS_INSTRUCTOR.search(path.read_text(encoding="utf-8", errors="replace")):
            return "imports the grader or its test helpers, or opens solutions/"
    return None


def public_readme(text: str) -> str:
    """The README without its ``INSTRUCTOR_SECTIONS`` (a heading up to the next ``## ``)."""
    out, keep, fenced = [], True, False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            keep = line[3:].strip() not in INSTRUCTOR_SECTIONS
        if keep:
            out.append(line)
    return "".join(out)


def public_makefile(text: str) -> str:
    """The Makefile without the paragraphs that define ``INSTRUCTOR_TARGETS`` (comments above
    included), and without them in ``.PHONY``."""
    target = re.compile(rf"^(?:{'|'.join(INSTRUCTOR_TARGETS)})\s*:(?!=)", re.M)
    paragraphs = [p for p in text.split("\n\n") if not target.search(p)]

    def phony(match: re.Match) -> str:
        names = [n for n in match[2].split() if n not in INSTRUCTOR_TARGETS]
        return match[1] + " ".join(names)

    return re.sub(r"^(\.PHONY:\s*)(.*)$", phony, "\n\n".join(paragraphs), flags=re.M)


def source_problems(root: Path, setting: CourseSetting) -> list[str]:
    """What must be fixed in the checkout before it is published: stale links, leaks."""
    from .release import scan_release
    problems = link_problems(root, setting)
    for assignment in find_assignments(root):
        problems += scan_release(root, assignment, setting)
    return problems


def published_problems(dest: Path, setting: CourseSetting) -> list[str]:
    """What must not be in the written tree, read back from the disk."""
    problems = []
    for path in sorted(p for p in dest.rglob("*") if ".git" not in p.relative_to(dest).parts[:1]):
        rel = path.relative_to(dest).as_posix()
        if "solutions" in path.relative_to(dest).parts:
            problems.append(f"{rel} is under a solutions folder")
        if not path.is_file():
            continue
        data = path.read_bytes()
        problems += [f"{rel} contains '{m}'" for m in MARKERS if m.encode() in data]
        if rel.endswith(".py") and IMPORTS_GRADER.search(data.decode("utf-8", "replace")):
            problems.append(f"{rel} imports the grader or a test helper that is not published")
    makefile = dest / "Makefile"
    if makefile.is_file() and "-m autograder" in makefile.read_text(encoding="utf-8"):
        problems.append("Makefile runs `-m autograder`, which is not published")
    for required in ("course_lib/__init__.py", "pyproject.toml", "README.md"):
        if not (dest / required).is_file():
            problems.append(f"{required} is missing")
    for folder, pattern in (("lectures", "*.ipynb"), ("exercises", "*/*.ipynb")):
        if not list((dest / folder).glob(pattern)):
            problems.append(f"{folder}/ holds no notebook")
    return problems + link_problems(dest, setting)


def _check_destination(dest: Path, root: Path) -> None:
    """``dest`` may be new, empty, or a clone holding only ``.git``; never the checkout itself."""
    if dest == root or dest in root.parents:
        raise PublishError(f"publish: {dest} holds the course checkout; write to a new folder", 2)
    if dest.exists():
        if not dest.is_dir():
            raise PublishError(f"publish: {dest} is a file, not a folder", 2)
        extra = sorted(p.name for p in dest.iterdir() if p.name != ".git")
        if extra:
            raise PublishError(f"publish: {dest} is not empty ({', '.join(extra[:5])}"
                               f"{', ...' if len(extra) > 5 else ''}); publish into a new folder "
                               "or a clone of the public repository emptied of all but .git", 2)


def _copy(root: Path, rel: str, dest: Path) -> None:
    source, target = root / rel, dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if rel == "README.md":
        target.write_text(public_readme(source.read_text(encoding="utf-8")), encoding="utf-8")
    elif rel == "Makefile":
        target.write_text(public_makefile(source.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        shutil.copy2(source, target)


def _remove_written(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for entry in dest.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def write_public_tree(root: Path, dest: Path) -> tuple[CourseSetting, list[str], dict[str, str]]:
    """Write the public tree of ``root`` to ``dest``: the setting, the files written and, for each
    file left out, why. Raises ``PublishError``; ``dest`` is left as it was on failure."""
    try:
        setting = load_setting(root)
    except SettingError as error:
        raise PublishError(f"publish: {error}", 2) from None
    if setting.is_placeholder:
        raise PublishError(
            f"publish: refusing: [tool.course] repository in {root / 'pyproject.toml'} is still "
            f"the placeholder {setting.repository!r}, where no one publishes. Set `repository = "
            f"\"owner/name\"` (the public GitHub repository) and `tag` (the git tag students "
            f"install) under [tool.course] there, run `python -m autograder release` and `check`, "
            f"commit, and publish again.", 2)
    _check_destination(dest, root)
    files = tracked_files(root)
    problems = source_problems(root, setting)
    problems += [f"{rel} is a symbolic link" for rel in files if (root / rel).is_symlink()]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise PublishError("publish: FAILED, fix the checkout first (`python -m autograder "
                           f"release`, then `check`):\n{listed}", 1)
    created = not dest.exists()
    written, left_out = [], {}
    for rel in files:
        if not (root / rel).is_file():
            left_out[rel] = "tracked but not in the working tree"
            continue
        reason = instructor_only(rel, root / rel)
        if reason:
            left_out[rel] = reason
            continue
        _copy(root, rel, dest)
        written.append(rel)
    problems = published_problems(dest, setting)
    if problems:
        _remove_written(dest, created)
        raise PublishError("publish: FAILED, the written tree held what students must not get "
                           "(removed, nothing published):\n"
                           + "\n".join(f"  - {p}" for p in problems), 1)
    return setting, written, left_out


def publish(root: Path, dest: Path) -> int:
    """``python -m autograder publish DIR``: exit 0 with a summary, 2 or 1 with the reason."""
    try:
        setting, written, left_out = write_public_tree(root, dest)
    except PublishError as error:
        print(error)
        return error.status
    tops: dict[str, int] = {}
    for rel in written:
        top = rel.split("/")[0] + ("/" if "/" in rel else "")
        tops[top] = tops.get(top, 0) + 1
    print(f"publish: wrote {len(written)} files to {dest}: "
          + ", ".join(f"{top} ({n})" for top, n in sorted(tops.items())))
    reasons: dict[str, list[str]] = {}
    for rel, reason in left_out.items():
        reasons.setdefault(reason, []).append(rel)
    print(f"publish: left out {len(left_out)} tracked files:")
    for reason, rels in reasons.items():
        shown = ", ".join(rels[:4]) + (f", ... ({len(rels)} in all)" if len(rels) > 4 else "")
        print(f"  - {shown}: {reason}")
    print(f"publish: next, commit {dest} to github.com/{setting.repository}, tag it "
          f"{setting.tag} and push the tag: the badges open that tag and Colab installs it.")
    return 0
