"""``release``: solutions/ -> exercises/ with nbgrader; ``check``: exercises/ is current and clean.

The release of an assignment is nbgrader's ``generate_assignment`` run in a temporary course
directory (solutions stripped, hidden tests removed, outputs cleared, cells locked), then two
course-specific rewrites: the Colab badge opens ``exercises/``, and every Colab link and install
points at the repository and tag of ``[tool.course]`` in pyproject.toml (``links.py``). The bytes
only depend on the source notebooks and that setting, so ``check`` can regenerate and compare.
``release`` then stamps the setting into the lectures and the README as well (only the files
whose links change are rewritten); ``check`` fails when one of them points elsewhere.
"""
from __future__ import annotations

import difflib
import fnmatch
import shutil
import tempfile
from pathlib import Path

from .course import generate_assignment, last_error_line, make_course
from .links import CourseSetting, SettingError, link_problems, load_setting, stamp_course
from .notebooks import (HIDDEN_TESTS, IGNORED_FILES, MARKERS, SOLUTION, find_assignments,
                        has_region, is_solution, read_notebook, region_flags, rewrite_for_release,
                        source_notebooks, student_notebook_problems, write_notebook)
from .nbgrader_config import c as NBGRADER_CONFIG

RELEASE_TIMEOUT_S = 600


class ReleaseError(RuntimeError):
    pass


def build_release(root: Path, assignment: str, work: Path,
                  setting: CourseSetting | None = None) -> Path:
    """Generate the student release of one assignment under ``work``; return its folder. Its links
    point at ``setting`` (default: ``[tool.course]`` of ``root``)."""
    setting = setting or load_setting(root)
    course = make_course(work / f"course-{assignment}", root / "solutions", assignment)
    run = generate_assignment(course, assignment, timeout=RELEASE_TIMEOUT_S)
    if not run.ok:
        tail = "\n".join(run.output.splitlines()[-15:])
        raise ReleaseError(f"nbgrader generate_assignment {assignment} failed: "
                           f"{last_error_line(run.output)}\n{tail}")
    release = course / "release" / assignment
    for path in sorted(release.glob("*.ipynb")):
        nb = read_notebook(path)
        write_notebook(rewrite_for_release(nb, assignment, path.stem, setting), path)
    return release


def release(root: Path, assignments: list[str] | None = None) -> int:
    """Regenerate ``exercises/<assignment>`` for the given assignments (default: all), then stamp
    ``[tool.course]`` into the links of the lectures, the exercises and the README."""
    try:
        setting = load_setting(root)
    except SettingError as error:
        print(f"release: {error}")
        return 1
    status = _release_assignments(root, assignments, setting)
    if status == 0:
        try:
            changed = stamp_course(root, setting)
        except ValueError as error:   # a notebook that is not JSON, a README that is not UTF-8
            print(f"release: cannot stamp the links of lectures/, exercises/ and README.md: "
                  f"{error}")
            return 1
        for rel in changed:
            print(f"release: {rel} now points at {setting.repository} at tag {setting.tag}")
        if setting.is_placeholder:
            print(f"release: note: [tool.course] repository in pyproject.toml is the placeholder "
                  f"{setting.repository}; badges and Colab installs work once it names the public "
                  f"repository (README.md, 'Publishing the course')")
    return status


def _release_assignments(root: Path, assignments: list[str] | None,
                         setting: CourseSetting) -> int:
    known = find_assignments(root)
    if not known:
        print(f"release: no assignment under {root / 'solutions'}")
        return 0 if assignments is None else 1
    for name in assignments or []:
        if name not in known:
            print(f"release: unknown assignment {name!r} (have: {', '.join(known)})")
            return 1
    exercises = root / "exercises"
    if assignments is None:   # a full release also removes exercises whose source is gone
        assignments = known
        for stale in _released_assignments(root):
            if stale not in known:
                shutil.rmtree(exercises / stale)
                print(f"release: removed exercises/{stale}/ (no solutions/{stale}/)")
    with tempfile.TemporaryDirectory(prefix="autograder-release-") as tmp:
        for assignment in assignments:
            try:
                fresh = build_release(root, assignment, Path(tmp), setting)
            except ReleaseError as error:
                print(f"release: {error}")
                return 1
            dest = exercises / assignment
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(fresh, dest)
            files = sorted(str(p.relative_to(exercises)) for p in dest.rglob("*") if p.is_file())
            print(f"release: exercises/{assignment}/ <- solutions/{assignment}/ "
                  f"({', '.join(files)})")
    return 0


# --- check ----------------------------------------------------------------------------------------

def _released_assignments(root: Path) -> list[str]:
    exercises = root / "exercises"
    if not exercises.is_dir():
        return []
    return sorted(d.name for d in exercises.iterdir() if d.is_dir() and not d.name.startswith("."))


def _files(folder: Path) -> dict[str, Path]:
    """Relative path -> file, skipping what is never released (checkpoints, caches)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in rel.parts
                                      for pattern in IGNORED_FILES):
            found[rel.as_posix()] = path
    return found


def compare_trees(fresh: Path, committed: Path, label: str) -> list[str]:
    """Differences between what release writes and what is committed, as readable lines."""
    problems = []
    new, old = _files(fresh), _files(committed)
    for rel in sorted(new.keys() - old.keys()):
        problems.append(f"{label}/{rel} is missing (release would write it)")
    for rel in sorted(old.keys() - new.keys()):
        problems.append(f"{label}/{rel} is not produced by release (stale or hand-added)")
    for rel in sorted(new.keys() & old.keys()):
        if new[rel].read_bytes() != old[rel].read_bytes():
            diff = list(difflib.unified_diff(
                old[rel].read_text(errors="replace").splitlines(),
                new[rel].read_text(errors="replace").splitlines(),
                "committed", "release would write", n=1, lineterm=""))
            shown = "\n      ".join(diff[2:14]) + ("\n      ..." if len(diff) > 14 else "")
            problems.append(f"{label}/{rel} differs from what release writes:\n      {shown}")
    return problems


def _stub_lines() -> set[str]:
    stubs = list(NBGRADER_CONFIG.ClearSolutions.code_stub.values())
    stubs.append(NBGRADER_CONFIG.ClearSolutions.text_stub)
    return {line.strip() for stub in stubs for line in stub.splitlines()}


def _distinctive(line: str) -> bool:
    """Long enough that finding it in a release is not a coincidence."""
    return len(line) >= 10 and any(ch.isalnum() for ch in line)


def secret_lines(source_nb) -> set[str]:
    """Lines of solutions and hidden tests that appear nowhere else in the source notebook."""
    secret: set[str] = set()
    public: set[str] = set()
    for cell in source_nb.cells:
        if is_solution(cell) and not has_region(cell.source, SOLUTION):
            secret.update(line.strip() for line in cell.source.splitlines())  # all of it
            continue
        tags = zip(region_flags(cell.source, SOLUTION), region_flags(cell.source, HIDDEN_TESTS))
        for (line, in_solution), (_, in_hidden) in tags:
            if "marker" in (in_solution, in_hidden):
                continue
            target = secret if "inside" in (in_solution, in_hidden) else public
            target.add(line.strip())
    return {line for line in secret - public - _stub_lines() if _distinctive(line)}


def scan_release(root: Path, assignment: str, setting: CourseSetting) -> list[str]:
    """Leaks and missing Colab plumbing in the committed student notebooks of one assignment."""
    problems = []
    for source in source_notebooks(root, assignment):
        path = root / "exercises" / assignment / source.name
        label = f"exercises/{assignment}/{source.name}"
        if not path.exists():
            continue   # reported by the comparison
        text = path.read_text(errors="replace")
        for marker in MARKERS:
            if marker in text:
                problems.append(f"{label} contains '{marker}'")
        try:
            nb = read_notebook(path)
        except Exception as error:   # noqa: BLE001 - any unreadable file is a finding
            problems.append(f"{label} is not a readable notebook: {error}")
            continue
        secrets = secret_lines(read_notebook(source))
        for index, cell in enumerate(nb.cells):
            for line in cell.source.splitlines():
                if line.strip() in secrets:
                    problems.append(f"{label} cell {index} contains a line of the solution or "
                                    f"hidden tests: {line.strip()!r}")
        problems += [f"{label}: {p}" for p in student_notebook_problems(nb, assignment,
                                                                         source.stem, setting)]
    return problems


def check(root: Path) -> int:
    """Exit status 1 with the list of problems when exercises/ is stale or leaks, or when a
    lecture, an exercise or the README links elsewhere than ``[tool.course]``; 0 otherwise."""
    try:
        setting = load_setting(root)
    except SettingError as error:
        print(f"check: FAILED: {error}")
        return 1
    assignments = find_assignments(root)
    problems = [f"exercises/{name}/ has no source solutions/{name}/"
                for name in _released_assignments(root) if name not in assignments]
    problems += link_problems(root, setting)
    with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
        for assignment in assignments:
            try:
                fresh = build_release(root, assignment, Path(tmp), setting)
            except ReleaseError as error:
                problems.append(str(error))
                continue
            problems += compare_trees(fresh, root / "exercises" / assignment,
                                      f"exercises/{assignment}")
            problems += scan_release(root, assignment, setting)
    if problems:
        print(f"check: FAILED, {len(problems)} problem(s) in {root}:")
        for problem in problems:
            print(f"  - {problem}")
        print("Regenerate with `python -m autograder release` and commit exercises/, lectures/ "
              "and README.md; if a leak remains, fix the markers in the solutions/ notebook.")
        return 1
    print(f"check: ok, exercises/ matches solutions/ ({len(assignments)} assignment(s)), "
          "no solution or hidden-test line, badges and set-up cells present, every link of the "
          f"lectures, exercises and README opens {setting.repository} at tag {setting.tag}")
    return 0
