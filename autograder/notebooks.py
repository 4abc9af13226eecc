"""Notebook helpers shared by release, check, grade and samples.

nbgrader cell kinds (read from ``cell.metadata.nbgrader``), solution and hidden-test regions, the
"Open in Colab" badge and set-up cell of a student notebook, and byte-stable writing.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import nbformat
from nbformat import NotebookNode

from .links import CHECKOUT, CourseSetting, load_setting, stamp_text

SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_TESTS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
# Any of these in a student notebook means the release step did not strip it.
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "BEGIN MARK SCHEME", "END MARK SCHEME")

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

# Files never copied from solutions/ into a course directory or the release.
IGNORED_FILES = (".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store")


# --- where things are -----------------------------------------------------------------------------

def find_assignments(root: Path) -> list[str]:
    """Assignment names: folders of ``root/solutions`` holding at least one notebook."""
    solutions = root / "solutions"
    if not solutions.is_dir():
        return []
    return sorted(d.name for d in solutions.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and source_notebooks(root, d.name))


def source_notebooks(root: Path, assignment: str) -> list[Path]:
    """The nbgrader source notebooks of one assignment (top level of its folder), sorted."""
    folder = root / "solutions" / assignment
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def colab_url(assignment: str, notebook: str, folder: str = "exercises",
              setting: CourseSetting | None = None) -> str:
    """Where the badge of ``folder/assignment/notebook.ipynb`` opens it on Colab: the repository
    and tag of ``setting`` (default: this checkout's ``[tool.course]``)."""
    setting = setting or load_setting(CHECKOUT)
    return setting.colab_url(f"{folder}/{assignment}/{notebook}.ipynb")


# --- nbgrader cell kinds --------------------------------------------------------------------------

def nbgrader_meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell: NotebookNode) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("solution", False))


def is_grade(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("grade", False))


def is_test(cell: NotebookNode) -> bool:
    """An autograded test cell: a code grade cell that is not itself an answer."""
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def is_code_answer(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and is_solution(cell)


# --- regions --------------------------------------------------------------------------------------

def region_flags(source: str, markers: tuple[str, str]) -> list[tuple[str, str]]:
    """Each line of ``source`` tagged 'marker', 'inside' or 'outside' the region."""
    begin, end = markers
    tagged, inside = [], False
    for line in source.splitlines():
        if begin in line:
            tagged.append((line, "marker"))
            inside = True
        elif end in line:
            tagged.append((line, "marker"))
            inside = False
        else:
            tagged.append((line, "inside" if inside else "outside"))
    return tagged


def has_region(source: str, markers: tuple[str, str]) -> bool:
    return markers[0] in source


def without_markers(source: str, markers: tuple[str, str] = SOLUTION) -> str:
    """The source with the region's delimiter lines removed and its content kept."""
    return "\n".join(line for line, where in region_flags(source, markers) if where != "marker")


def replace_region(source: str, make: Callable[[str], list[str]],
                   markers: tuple[str, str] = SOLUTION) -> str:
    """Replace each region (delimiters included) with ``make(indent)`` lines."""
    out: list[str] = []
    for line, where in region_flags(source, markers):
        if where == "outside":
            out.append(line)
        elif where == "marker" and markers[0] in line:
            out.extend(make(line[: len(line) - len(line.lstrip())]))
    return "\n".join(out)


# --- student notebooks ----------------------------------------------------------------------------

def rewrite_for_release(nb: NotebookNode, assignment: str, notebook: str,
                        setting: CourseSetting | None = None) -> NotebookNode:
    """Point the badge at exercises/ and every Colab link and install at ``setting``'s repository
    and tag (default: this checkout's ``[tool.course]``); drop run state."""
    setting = setting or load_setting(CHECKOUT)
    cells = nb.cells
    own_path = f"exercises/{assignment}/{notebook}.ipynb"
    for index, cell in enumerate(cells):
        cell.source = stamp_text(cell.source, setting, own_path if index == 0 else None)
    for cell in cells:
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
        cell.get("metadata", {}).pop("execution", None)  # timestamps some front-ends record
    nb.metadata.pop("widgets", None)                    # the instructor's saved widget state
    return nb


def student_notebook_problems(nb: NotebookNode, assignment: str, notebook: str,
                              setting: CourseSetting | None = None) -> list[str]:
    """What a released notebook lacks: the badge (first cell) and the Colab set-up (second cell)."""
    url = colab_url(assignment, notebook, setting=setting)
    problems = []
    cells = nb.cells
    first = cells[0] if cells else None
    if first is None or first.cell_type != "markdown" or BADGE_IMAGE not in first.source:
        problems.append("the first cell is not a markdown cell with the 'Open in Colab' badge")
    elif url not in first.source:
        problems.append(f"the badge does not open {url}")
    second = cells[1] if len(cells) > 1 else None
    if (second is None or second.cell_type != "code" or "google.colab" not in second.source
            or "pip install" not in second.source):
        problems.append("the second cell is not the set-up cell (`if \"google.colab\" in "
                        "sys.modules: %pip install ...`)")
    return problems


# --- answers --------------------------------------------------------------------------------------

def solution_source(source_cell: NotebookNode) -> str:
    """What a student who solved the cell would have written (the source, delimiters removed)."""
    return without_markers(source_cell.source, SOLUTION)


def solved(release_nb: NotebookNode, source_nb: NotebookNode) -> NotebookNode:
    """The release with every answer cell filled in from the source notebook."""
    answers = {grade_id(c): c for c in source_nb.cells if is_solution(c)}
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        if is_solution(cell) and grade_id(cell) in answers:
            cell.source = solution_source(answers[grade_id(cell)])
    return nb


# --- files ----------------------------------------------------------------------------------------

def read_notebook(path: Path) -> NotebookNode:
    return nbformat.read(str(path), as_version=4)


def notebook_bytes(nb: NotebookNode) -> bytes:
    """nbformat's own serialisation (sorted keys, indent 1) with a final newline."""
    return (nbformat.writes(nb) + "\n").encode("utf-8")


def write_notebook(nb: NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(notebook_bytes(nb))
