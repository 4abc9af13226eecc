"""``samples``: fixture submissions built from the live solution and release notebooks.

Each fixture is a folder ``OUT/<name>/`` holding what a student would hand in, made from the
current notebooks so the fixtures never drift from the assignment. ``OUT/expected.json`` says what
grading each one must give: its status, and which test cells must score zero; every other test
cell must score what it scores for ``solution``.

The hostile edits target the LAST code answer of the assignment (so no later exercise depends on
it), except ``calls_reference``, which targets the last answer whose tests use
``course_lib.grading.forbid_reference``.
"""
from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from nbformat import NotebookNode

from .notebooks import (SOLUTION, grade_id, has_region, is_code_answer, is_test, notebook_bytes,
                        read_notebook, region_flags, replace_region, solution_source, solved,
                        source_notebooks)
from .release import ReleaseError, build_release

INFINITE_LOOP = "while True:\n    pass"


def _tests_after(source_nb: NotebookNode, answer_id: str) -> list[NotebookNode]:
    """Test cells between an answer and the next code answer: the tests of that exercise."""
    ids = [grade_id(c) for c in source_nb.cells]
    tests = []
    for cell in source_nb.cells[ids.index(answer_id) + 1:]:
        if is_code_answer(cell):
            break
        if is_test(cell):
            tests.append(cell)
    return tests


def _python(source: str) -> ast.Module | None:
    """Parse a cell, skipping IPython magics and shell lines."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _first_function(source: str) -> str | None:
    tree = _python(source)
    for node in tree.body if tree else []:
        if isinstance(node, ast.FunctionDef):
            return node.name
    return None


def _forbidden_references(source: str) -> list[str]:
    """Dotted names passed to ``forbid_reference(...)`` in a test cell (literals or constants)."""
    tree = _python(source)
    names: list[str] = []
    for node in ast.walk(tree) if tree else []:
        func = getattr(node, "func", None)
        called = getattr(func, "id", None) or getattr(func, "attr", None)
        if not isinstance(node, ast.Call) or called != "forbid_reference":
            continue
        for arg in node.args:
            value = arg.value if isinstance(arg, ast.Starred) else arg
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                names.append(value.value)
            elif isinstance(value, (ast.Name, ast.Attribute)):
                constant = getattr(value, "id", None) or getattr(value, "attr", None)
                names += _reference_constant(constant)
    return names


def _reference_constant(name: str) -> list[str]:
    """A constant the test cells import from ``course_lib.grading``. The tuples live in
    ``course_lib.references``, which imports nothing: read there first, so that writing the
    samples does not import torch."""
    for module in ("course_lib.references", "course_lib.grading"):
        found = getattr(importlib.import_module(module), name, None)
        if found is not None:
            return [found] if isinstance(found, str) else list(found)
    return []


def _module_spec(name: str):
    """The import spec of module ``name``, or None. Only packages on the way are imported (a name
    below a plain module, such as ``course_lib.dino.DINOLoss``, is no module, and finding that out
    must not import ``course_lib.dino``)."""
    parts = name.split(".")
    spec = None
    for depth in range(1, len(parts) + 1):
        if spec is not None and spec.submodule_search_locations is None:
            return None                       # the name goes below a module that is no package
        try:
            spec = importlib.util.find_spec(".".join(parts[:depth]))
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
    return spec


def _importable_function(dotted: str) -> bool:
    """Whether ``dotted`` names a callable attribute of a module. A function or class defined at
    the top of the module's source answers without importing it (the reference modules import
    torch, timm and torchvision: seconds); any other name is imported and asked."""
    module, _, attr = dotted.rpartition(".")
    spec = _module_spec(module)
    if spec is None:
        return False
    if spec.origin and spec.origin.endswith(".py"):
        tree = _python(Path(spec.origin).read_text())
        defined = {node.name for node in (tree.body if tree else [])
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        if attr in defined:
            return True
    try:
        return callable(getattr(importlib.import_module(module), attr))
    except (ImportError, AttributeError, ValueError):
        return False


def _reference_target(source_nb: NotebookNode) -> tuple[str, str, str, list[str]] | None:
    """(answer id, its function, a reference it may not call, the tests that check) or None."""
    for cell in reversed(source_nb.cells):
        if not is_code_answer(cell):
            continue
        function = _first_function(solution_source(cell))
        tests = [t for t in _tests_after(source_nb, grade_id(cell))
                 if "forbid_reference" in t.source]
        if function is None or not tests:
            continue
        references = [r for t in tests for r in _forbidden_references(t.source)
                      if _importable_function(r)]
        if references:
            same_name = [r for r in references if r.rpartition(".")[2] == function]
            return grade_id(cell), function, (same_name or references)[0], \
                [grade_id(t) for t in tests]
    return None


def _in_region(source_cell: NotebookNode, make: Callable[[str], list[str]]) -> str:
    """The solved cell with its solution region replaced by ``make(indent)``."""
    if has_region(source_cell.source, SOLUTION):
        return replace_region(source_cell.source, make)
    return "\n".join(make(""))


def _noisy(source_cell: NotebookNode) -> str:
    """The solved cell, writing a warning and a line to stderr each time its code runs."""
    noise = ["import sys as _sys, warnings as _warnings",
             '_warnings.warn("a deprecated call in my code")',
             'print("Warning: noise my code prints on stderr", file=_sys.stderr)']
    if not has_region(source_cell.source, SOLUTION):
        return "\n".join(noise) + "\n" + source_cell.source
    out: list[str] = []          # each region keeps its own body (a cell may solve two functions)
    for line, where in region_flags(source_cell.source, SOLUTION):
        if where == "marker" and SOLUTION[0] in line:
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + noise_line for noise_line in noise)
        elif where != "marker":
            out.append(line)
    return "\n".join(out)


Samples = dict[str, dict[str, bytes]]          # fixture -> {file name: bytes}
Expected = dict[str, dict]                      # fixture -> {"status", "zero", ...}


def _files(notebooks: dict[str, NotebookNode], prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{name}.ipynb": notebook_bytes(nb) for name, nb in notebooks.items()}


def _with_answer(solution: dict[str, NotebookNode], notebook: str, answer_id: str,
                 source: str) -> dict[str, bytes]:
    notebooks = copy.deepcopy(solution)
    for cell in notebooks[notebook].cells:
        if grade_id(cell) == answer_id:
            cell.source = source
    return _files(notebooks)


def _test_cell_variants(solution: dict[str, NotebookNode]) -> tuple[Samples, Expected]:
    """Test cells deleted, edited to `pass`, or every cell's nbgrader metadata dropped."""
    deleted, edited, stripped = (copy.deepcopy(solution) for _ in range(3))
    for name in solution:
        deleted[name].cells = [c for c in deleted[name].cells if not is_test(c)]
        for cell in edited[name].cells:
            if is_test(cell):
                cell.source = "pass"
        for cell in stripped[name].cells:   # what an editor that ignores cell metadata saves
            for key in ("nbgrader", "deletable", "editable"):
                cell.metadata.pop(key, None)
    samples = {"deleted_tests": _files(deleted), "edited_tests": _files(edited),
               "metadata_stripped": _files(stripped)}
    return samples, {name: {"status": "ok", "zero": []} for name in samples}


def _broken_answer_variants(solution: dict[str, NotebookNode],
                            source: dict[str, NotebookNode]) -> tuple[Samples, Expected]:
    """The last code answer loops, raises, does not parse, or is noisy on stderr."""
    answers = [(name, c) for name in sorted(source) for c in source[name].cells
               if is_code_answer(c)]
    if not answers:
        return {}, {}
    notebook, answer = answers[-1]
    answer_id = grade_id(answer)
    lost = [grade_id(t) for t in _tests_after(source[notebook], answer_id)]
    sources = {
        "infinite_loop": INFINITE_LOOP,
        "raises": _in_region(answer, lambda ind: [f'{ind}raise RuntimeError("a bug in my code")']),
        "syntax_error": _in_region(answer, lambda ind: [f"{ind}return [1, 2"]),
        "noisy": _noisy(answer),
    }
    samples = {name: _with_answer(solution, notebook, answer_id, text)
               for name, text in sources.items()}
    expected = {name: {"status": "ok", "zero": [] if name == "noisy" else lost,
                       "target": answer_id} for name in sources}
    return samples, expected


def _calls_reference_variant(solution: dict[str, NotebookNode],
                             source: dict[str, NotebookNode]) -> tuple[Samples, Expected]:
    """An answer that wraps the course_lib reference its hidden tests forbid."""
    for notebook in sorted(source):
        target = _reference_target(source[notebook])
        if target is None:
            continue
        answer_id, function, reference, checked = target
        module, _, attr = reference.rpartition(".")
        cell = next(c for c in source[notebook].cells if grade_id(c) == answer_id)
        wrapper = (f"\n\nfrom {module} import {attr} as _reference_{attr}\n\n\n"
                   f"def {function}(*args, **kwargs):\n"
                   f"    return _reference_{attr}(*args, **kwargs)\n")
        samples = {"calls_reference": _with_answer(solution, notebook, answer_id,
                                                   solution_source(cell) + wrapper)}
        return samples, {"calls_reference": {"status": "ok", "zero": checked,
                                             "target": answer_id, "reference": reference}}
    return {}, {}


def build_samples(release: dict[str, NotebookNode],
                  source: dict[str, NotebookNode]) -> tuple[Samples, Expected]:
    """Every fixture submission of an assignment, and what grading each must give."""
    solution = {name: solved(release[name], source[name]) for name in release}
    release_zero, answered = [], False   # tests after the first code answer fail on the release
    for name in sorted(source):
        for cell in source[name].cells:
            answered |= is_code_answer(cell)
            if answered and is_test(cell):
                release_zero.append(grade_id(cell))
    first = sorted(solution)[0]
    samples: Samples = {
        "solution": _files(solution), "release_unmodified": _files(release),
        "renamed": _files(solution, prefix="Copy of "),
        "corrupt": {f"{first}.ipynb": notebook_bytes(solution[first])[:300]},  # cut-off download
        "missing": {"notes.txt": b"I could not get the notebook to download, sorry.\n"}}
    expected: Expected = {
        "solution": {"status": "ok", "zero": []},
        "release_unmodified": {"status": "ok", "zero": release_zero},
        "renamed": {"status": "ok", "zero": []},
        "corrupt": {"status": "error"}, "missing": {"status": "missing"}}
    for more, outcome in (_test_cell_variants(solution),
                          _broken_answer_variants(solution, source),
                          _calls_reference_variant(solution, source)):
        samples.update(more)
        expected.update(outcome)
    return samples, expected


def write_samples(root: Path, assignment: str, out: Path) -> int:
    """Write ``OUT/<fixture>/...`` and ``OUT/expected.json`` for one assignment."""
    sources = {p.stem: read_notebook(p) for p in source_notebooks(root, assignment)}
    if not sources:
        print(f"samples: no notebook in {root / 'solutions' / assignment}")
        return 1
    with tempfile.TemporaryDirectory(prefix="autograder-samples-") as tmp:
        try:
            folder = build_release(root, assignment, Path(tmp))
        except ReleaseError as error:
            print(f"samples: {error}")
            return 1
        releases = {name: read_notebook(folder / f"{name}.ipynb") for name in sources}
    samples, expected = build_samples(releases, sources)
    out.mkdir(parents=True, exist_ok=True)
    for name, contents in sorted(samples.items()):
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir()
        for filename, data in contents.items():
            (out / name / filename).write_bytes(data)
    (out / "expected.json").write_text(json.dumps(
        {"assignment": assignment, "fixtures": expected}, indent=2, sort_keys=True) + "\n")
    print(f"samples: {len(samples)} fixture submissions for {assignment} in {out}: "
          f"{', '.join(sorted(samples))}")
    return 0
