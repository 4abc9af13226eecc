"""What every graded notebook in ``solutions/`` promises, checked in-process (``notebook_harness``):
the solution passes every test cell without a word on stderr, the release fails every one, the
stubs keep what the student is given, the points the text announces are the points graded, and
the values the grader records do not depend on the global random state. Each unit's mistakes are
in ``tests/test_mutations_<unit>.py``; the autograder's end-to-end run in ``test_autograder.py``.
"""
from __future__ import annotations

import re

import pytest

from autograder.notebooks import nbgrader_meta
from notebook_harness import Notebook, release_source, solution_notebooks

NOTEBOOKS = {path.parent.name: Notebook(path) for path in solution_notebooks()}
POINTS = re.compile(r"\((\d+) points?")


@pytest.fixture(params=sorted(NOTEBOOKS))
def notebook(request) -> Notebook:
    return NOTEBOOKS[request.param]


def _metas(notebook: Notebook) -> list[tuple[str, dict]]:
    return [(c.cell_type, nbgrader_meta(c)) for c in notebook.cells]


def test_solution_passes_every_test_cell_silently(notebook):
    results, stderr = notebook.run()
    tests = [m["grade_id"] for kind, m in _metas(notebook) if kind == "code" and m.get("grade")]
    assert list(results) == tests and tests
    failed = {cell: repr(err) for cell, err in results.items() if err is not None}
    assert not failed, f"the solution fails test cells: {failed}"
    assert stderr == "", f"the solution writes to stderr (scores zero in nbgrader): {stderr!r}"


def test_release_fails_every_test_cell(notebook):
    """A stub raises NotImplementedError; a stubbed constant is reported as not defined."""
    results, _ = notebook.run(release=True)
    for cell, error in results.items():
        assert isinstance(error, NotImplementedError) or (
            isinstance(error, AssertionError) and "not defined" in str(error)), (cell, error)


def test_release_stubs_are_valid_python_that_keep_signature_and_docstring(notebook):
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution"):
            stub = release_source(cell.source)
            compile(stub, meta["grade_id"], "exec")
            assert "NotImplementedError" in stub
            if cell.source.lstrip().startswith("def "):
                assert stub.lstrip().startswith("def ") and '"""' in stub, meta["grade_id"]


def test_every_answer_has_a_test_cell_and_the_announced_points_are_graded(notebook):
    metas = _metas(notebook)
    assert all(m.get("schema_version") == 3 for _, m in metas)
    ids = [m["grade_id"] for _, m in metas]
    assert len(ids) == len(set(ids))
    for kind, m in metas:
        if kind == "code" and m.get("solution"):
            assert "test_" + m["grade_id"].removeprefix("solution_") in ids, m["grade_id"]
    graded = {m["grade_id"]: m.get("points", 0) for _, m in metas if m.get("grade")}
    announced = int(POINTS.search(notebook.cells[0].source).group(1))   # "graded (17 points)"
    assert sum(graded.values()) == announced
    for cell in notebook.cells:                        # "# Tests for f (2 points)" per test cell
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("grade"):
            first = cell.source.splitlines()[0]
            assert int(POINTS.search(first).group(1)) == meta["points"], first


def test_graded_values_do_not_depend_on_the_global_random_state(notebook, tmp_path, monkeypatch):
    """Student code may consume the global RNG: the journal the grader compares (every check's
    name and value) must come out the same whatever state the test cells start from."""
    import course_lib.grading as grading

    def journal(seed: int) -> list[str]:
        path = tmp_path / f"journal-{seed}.jsonl"
        monkeypatch.setattr(grading, "_journal_path", str(path))
        replace = {}
        for kind, meta in _metas(notebook):
            if meta.get("grade") and kind == "code":
                prefix = f"torch.manual_seed({seed}); torch.rand({seed % 5 + 1})\n"
                replace[meta["grade_id"]] = prefix + notebook.source(meta["grade_id"])
        results, _ = notebook.run(replace)
        assert all(error is None for error in results.values()), results
        return path.read_text().splitlines()

    first, second = journal(1), journal(2024)
    assert len(first) > 50 and first == second
