"""Finding, reading and repairing the submissions of one assignment.

Everything here reads files a student handed in, as the grader's user and outside any jail, so:
a submission folder or notebook that is a symbolic link or a special file (FIFO, device) is refused
with a row saying so, never followed or opened; a notebook is read through ``O_NOFOLLOW`` with a
size cap; any file name is accepted (names that are not UTF-8 are kept as Python's
``surrogateescape`` strings and escaped wherever they are written, see ``redact.printable``).
"""
from __future__ import annotations

import copy
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .notebooks import grade_id, is_code_answer, is_grade, is_solution, is_test
from .redact import printable

MAX_NOTEBOOK_BYTES = 64 << 20
HIDDEN_PREFIXES = (".", "__MACOSX")


@dataclass
class Job:
    student_id: str
    files: dict[str, str]                 # notebook name -> submitted file
    notes: list[str] = field(default_factory=list)
    refused: str = ""                     # why nothing of the folder can be graded


@dataclass
class Repairs:
    restored: list[str] = field(default_factory=list)   # deleted grade cells put back
    edited: list[str] = field(default_factory=list)     # test cells whose source was changed
    retyped: list[str] = field(default_factory=list)    # test cells turned into markdown or raw

    def notes(self) -> list[str]:
        said = [("restored deleted cells", self.restored),
                ("restored edited test cells", self.edited),
                ("restored test cells changed to another cell type", self.retyped)]
        return [f"{what}: {', '.join(ids)}" for what, ids in said if ids]


# --- finding them ---------------------------------------------------------------------------------

def normalise_name(filename: str) -> str:
    """'Copy of InfoNCE (1).ipynb' -> 'infonce': what Colab and browsers do to a name, undone."""
    stem = filename[:-6] if filename.lower().endswith(".ipynb") else filename
    stem = stem.lower().strip()
    stem = re.sub(r"^(copy of\s+)+", "", stem)
    stem = re.sub(r"(\s*\(\d+\))+$", "", stem)                 # 'infonce (1)'
    stem = re.sub(r"[-_ ](copy|checkpoint)(\s*\d+)?$", "", stem)  # 'infonce-checkpoint'
    return re.sub(r"[^a-z0-9]", "", stem)


def _candidates(folder: Path) -> tuple[list[Path], list[str]]:
    """Regular ``.ipynb`` files under ``folder`` (links never followed), and the notebooks refused
    because they are links or special files."""
    found, refused = [], []
    for dirpath, dirnames, filenames in os.walk(folder):       # followlinks=False
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(HIDDEN_PREFIXES))
        for name in sorted(filenames):
            if name.startswith(HIDDEN_PREFIXES) or not name.endswith(".ipynb"):
                continue
            path = Path(dirpath) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path)
            else:
                refused.append(path.relative_to(folder).as_posix())
    return found, refused


def match_notebooks(folder: Path, notebooks: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Submitted file for each assignment notebook, and notes on what was guessed or refused."""
    found, refused = _candidates(folder)
    notes = [f"refused '{printable(name)}': a symbolic link or special file, not a notebook"
             for name in refused]
    by_name: dict[str, list[Path]] = {}
    for path in found:
        by_name.setdefault(normalise_name(path.name), []).append(path)
    matched: dict[str, Path] = {}
    if len(notebooks) == 1 and found:
        name = notebooks[0]
        same = by_name.get(normalise_name(name), [])
        matched[name] = same[0] if same else found[0]
        if len(found) > 1:
            notes.append(f"{len(found)} notebooks submitted, graded "
                         f"'{printable(matched[name].name)}'")
    else:
        for name in notebooks:
            same = by_name.get(normalise_name(name), [])
            if same:
                matched[name] = same[0]
            elif found:
                notes.append(f"no file matches {name}.ipynb")
    for name, path in matched.items():
        if path.name != f"{name}.ipynb":
            notes.append(f"graded '{printable(path.relative_to(folder).as_posix())}' as "
                         f"{name}.ipynb")
    return matched, notes


def find_jobs(submissions: Path, notebooks: list[str]) -> list[Job]:
    """One job per student folder; a folder that is a symbolic link is refused, not followed."""
    jobs = []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith(HIDDEN_PREFIXES):
            continue
        if entry.is_symlink():
            jobs.append(Job(entry.name, {}, [], refused="the submission folder is a symbolic "
                                                        "link: refused, not followed"))
            continue
        if not entry.is_dir():
            continue
        matched, notes = match_notebooks(entry, notebooks)
        refused = ""
        if not matched and any(n.startswith("refused") for n in notes):
            refused = "; ".join(notes)
        jobs.append(Job(entry.name, {k: str(v) for k, v in matched.items()}, notes, refused))
    return jobs


# --- reading one ----------------------------------------------------------------------------------

def read_submission(path: Path) -> NotebookNode:
    """The notebook at ``path``: a regular file (not a link, FIFO or device) of at most
    ``MAX_NOTEBOOK_BYTES``; raises ValueError or OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = handle.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
    return nbformat.reads(data.decode("utf-8"), as_version=4)


# --- repairing it ---------------------------------------------------------------------------------

def _keys(cell) -> list[tuple[str, str, str]]:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return [(cell.cell_type, "first line", first), (cell.cell_type, "source", cell.source.strip())]


def _recognise_stripped_cells(nb, release_nb) -> None:
    """Give back nbgrader metadata to cells that lost it (VS Code, copy and paste).

    A locked cell (test, instructions) is recognised by its whole source, an answer by its first
    line (the given signature); only keys that single out one cell of the release count.
    """
    def key(ref):
        return _keys(ref)[0 if is_solution(ref) else 1]

    counts = Counter(k for cell in release_nb.cells for k in _keys(cell))
    unique = {key(c): c for c in release_nb.cells if grade_id(c) and counts[key(c)] == 1}
    present = {grade_id(c) for c in nb.cells}
    for cell in nb.cells:
        if grade_id(cell) is not None:
            continue
        ref = next((unique[k] for k in _keys(cell) if k in unique), None)
        if ref is not None and grade_id(ref) not in present:
            cell.setdefault("metadata", {})["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
            present.add(grade_id(ref))


def _fresh_copy(ref: NotebookNode, nb: NotebookNode, cell_ids: set) -> NotebookNode:
    cell = copy.deepcopy(ref)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    if nb.get("nbformat_minor", 0) < 5:
        cell.pop("id", None)
    elif cell.get("id") in cell_ids:
        cell["id"] = f"{cell['id']}-restored"
    return cell


def restore_grade_cells(nb, release_nb) -> Repairs:
    """Put back nbgrader metadata and deleted or retyped grade cells, from the released notebook.

    A test cell whose metadata was stripped is recognised; one turned into a markdown or raw cell
    is replaced by the released test; a deleted one is put back after the cell that preceded it.
    Code answers are never re-inserted: that would replace the student's own definitions with
    the stub. (Every locked cell's *source* is then taken from the instructor's copy by
    ``journal.graded_notebook``.)
    """
    released = {grade_id(c): c for c in release_nb.cells if grade_id(c)}
    _recognise_stripped_cells(nb, release_nb)
    repairs = Repairs()
    cell_ids = {c.get("id") for c in nb.cells}
    for index, cell in enumerate(nb.cells):
        ref = released.get(grade_id(cell))
        if ref is None:
            continue
        if cell.cell_type == ref.cell_type:
            cell.metadata["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
            if is_test(ref) and cell.source != ref.source and grade_id(ref) not in repairs.edited:
                repairs.edited.append(grade_id(ref))
        elif is_test(ref):
            nb.cells[index] = _fresh_copy(ref, nb, cell_ids)
            repairs.retyped.append(grade_id(ref))
    present = [grade_id(c) for c in nb.cells]
    for index, ref in enumerate(release_nb.cells):
        gid = grade_id(ref)
        if gid is None or gid in present or not is_grade(ref) or is_code_answer(ref):
            continue
        anchors = [grade_id(c) for c in release_nb.cells[:index] if grade_id(c) in present]
        position = (len(present) - present[::-1].index(anchors[-1])) if anchors else len(present)
        nb.cells.insert(position, _fresh_copy(ref, nb, cell_ids))
        present.insert(position, gid)
        repairs.restored.append(gid)
    return repairs
