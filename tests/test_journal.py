"""The outside-the-kernel half of grading: rewriting test cells, reading journals, verdicts.

Fast, no kernel: the journal lines are written by hand (what ``course_lib.grading`` would write)
or produced by calling ``course_lib.grading`` in this process with a journal file set.
"""
from __future__ import annotations

import ast
import json
import math

import nbformat
import numpy
import pytest
import torch

import course_lib.grading as grading
from autograder import graded_copy, journal


def close(name, got, expected=None, atol=1e-5, rtol=1e-4, hint="h", mistakes=None, cell="t"):
    plain = lambda v: None if v is None else {"shape": list(torch.as_tensor(v).shape),  # noqa
                                              "values": torch.as_tensor(v).flatten().tolist()}
    return {"cell": cell, "kind": "close", "name": name, "got": plain(got), "got_type": "Tensor",
            "expected": plain(expected), "atol": atol, "rtol": rtol, "hint": hint,
            "mistakes": {k: plain(v) for k, v in (mistakes or {}).items()}}


GOLDEN = [close("a", [1.0, 2.0], [1.0, 2.0], hint="compare a",
                mistakes={"sign flipped: negate": [-1.0, -2.0]}),
          {"cell": "t", "kind": "shape", "name": "s", "got": [2], "expected": [2], "hint": "hs"},
          {"cell": "t", "kind": "true", "name": "b", "got": True, "hint": "hb"}]


def student(a=(1.0, 2.0), shape=(2,), flag=True):
    return [close("a", list(a)), {"cell": "t", "kind": "shape", "name": "s", "got": list(shape)},
            {"cell": "t", "kind": "true", "name": "b", "got": flag}]


def test_matching_journal_scores_full_points():
    v = journal.verdict("t", 2.0, None, GOLDEN, student(a=(1.0 + 1e-6, 2.0)))
    assert (v.score, v.passed_checks, v.messages) == (2.0, 3, [])


@pytest.mark.parametrize("journal_lines, words", [
    (student(a=(1.0, 2.1)), "wrong values (largest difference 0.1)"),
    (student(a=(-1.0, -2.0)), "sign flipped"),
    (student(a=(1.0, 2.0, 3.0)), "wrong shape"),
    (student(shape=(3,)), "wrong shape: got [3]"),
    (student(flag=False), "hb"),
    (student()[:2], "b: not reached"),
    (student() + student()[:1], "more checks than the test has"),
    (list(reversed(student())), "out of order"),
])
def test_mismatches_score_zero_with_a_teaching_message(journal_lines, words):
    v = journal.verdict("t", 2.0, None, GOLDEN, journal_lines)
    assert v.score == 0.0
    assert any(words in m for m in v.messages), v.messages


def test_points_come_from_the_journal_never_from_the_cells_error_outputs():
    # The error outputs come from the student's kernel: showing one cannot cost recorded points,
    # hiding one cannot earn missing ones. An error only explains a failure.
    error = ("ZeroDivisionError", "division by zero\nmore")
    assert journal.verdict("t", 2.0, error, GOLDEN, student()).score == 2.0
    v = journal.verdict("t", 2.0, error, GOLDEN, student()[:1])
    assert v.score == 0.0 and v.messages[0] == "ZeroDivisionError: division by zero"
    v = journal.verdict("t", 2.0, ("RuntimeError", "secret line"), GOLDEN, [],
                        clean=lambda text: "[removed]" if "secret" in text else text)
    assert v.messages[0] == "[removed]"


def test_tolerance_and_values_come_from_the_golden_journal_not_the_student():
    forged = student(a=(5.0, 5.0))
    forged[0].update(atol=1e9, rtol=1e9, expected=forged[0]["got"])
    assert journal.verdict("t", 2.0, None, GOLDEN, forged).score == 0.0


def test_infinities_must_match_and_nan_never_passes():
    golden = [close("m", [-math.inf, 1.0], [-math.inf, 1.0])]
    assert journal.verdict("t", 1, None, golden, [close("m", [-math.inf, 1.0])]).score == 1
    assert journal.verdict("t", 1, None, golden, [close("m", [-1e30, 1.0])]).score == 0
    assert journal.verdict("t", 1, None, golden, [close("m", [math.nan, 1.0])]).score == 0


@pytest.mark.parametrize("value", [None, {"shape": [2], "values": [1.0]},
                                   {"shape": [2], "values": [1.0, "2"]},
                                   {"shape": [2], "values": [True, False]}, "1.0, 2.0",
                                   {"shape": [-2], "values": []}])
def test_malformed_student_values_are_a_wrong_type_not_a_crash(value):
    lines = student()
    lines[0]["got"] = value
    v = journal.verdict("t", 2.0, None, GOLDEN, lines)
    assert v.score == 0.0 and "wrong type" in v.messages[0]


def test_read_journal_groups_by_cell_and_drops_garbage():
    text = "\n".join([json.dumps({"cell": "a", "kind": "true", "name": "x", "got": True}),
                      "not json", json.dumps([1, 2]), json.dumps({"cell": 3}),
                      json.dumps({"cell": "b", "kind": "true", "name": "y", "got": True}),
                      json.dumps({"cell": "a", "kind": "true", "name": "z", "got": False})])
    cells = journal.read_journal(text)
    assert [e["name"] for e in cells["a"]] == ["x", "z"] and list(cells) == ["a", "b"]


def test_rewrite_removes_expected_values_and_mistakes_and_tags_the_cell():
    source = ('check_close("n", f(x), oracle(x), hint="h", mistakes={"m": wrong(x)})\n'
              'g.check_close("k", y, expected=oracle(y), atol=1e-3, hint="h")\n'
              "### BEGIN HIDDEN TESTS\ncheck_true(f(1) == 2, 'p', hint='q')\n"
              "### END HIDDEN TESTS\n")
    code = journal.test_source(source, "test_f", with_expected=False, tag=True)
    calls = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call)]
    names = {ast.unparse(c.func) for c in calls}
    assert "oracle" not in names and "wrong" not in names
    assert "check_true" in names and "BEGIN" not in code
    assert code.splitlines()[0].endswith("._begin_cell('test_f')")
    kept = journal.test_source(source, "test_f", with_expected=True, tag=False)
    assert "oracle(x)" in kept and "wrong(x)" in kept


def test_course_checks_write_the_journal_the_verdict_reads(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    monkeypatch.setattr(grading, "_journal_path", str(path))
    grading._begin_cell("test_x")
    grading.check_close("sum", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), hint="h",
                        mistakes={"off: by one": torch.tensor([2.0, 3.0])})
    grading.check_shape("shape", torch.zeros(2, 3), (2, 3), hint="h")
    grading.check_true(True, "flag", hint="h")
    golden = journal.read_journal(path.read_text())["test_x"]
    path.unlink()
    grading.check_close("sum", torch.tensor([2.0, 3.0]), None, hint="h")   # the graded copy
    grading.check_shape("shape", torch.zeros(2, 3), (2, 3), hint="h")
    grading.check_true(True, "flag", hint="h")
    mine = journal.read_journal(path.read_text())["test_x"]
    v = journal.verdict("test_x", 1.0, None, golden, mine)
    assert v.score == 0.0 and "off" in v.messages[0]


def test_graded_notebook_takes_locked_cells_from_the_source_and_keeps_answers():
    meta = lambda gid, **kw: {"nbgrader": {"grade_id": gid, **kw}}  # noqa: E731
    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import course_lib.grading", metadata=meta("setup", locked=True)),
        nbformat.v4.new_code_cell("def f():\n### BEGIN SOLUTION\n    return 1\n### END SOLUTION",
                                  metadata=meta("ans", solution=True)),
        nbformat.v4.new_code_cell("check_close('f', f(), 1, hint='h')",
                                  metadata=meta("test_f", grade=True, locked=True, points=1))])
    student_nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os  # edited", metadata=meta("setup", locked=True)),
        nbformat.v4.new_code_cell("def f():\n    return 2", metadata=meta("ans", solution=True)),
        nbformat.v4.new_code_cell("pass  # tests deleted by the student",
                                  metadata=meta("test_f", grade=True, locked=True, points=1)),
        nbformat.v4.new_code_cell("print('my own cell')")])
    graded = journal.graded_notebook(student_nb, source)
    sources = [c.source for c in graded.cells]
    assert sources[0] == "import course_lib.grading" and sources[1] == "def f():\n    return 2"
    assert "check_close('f', f(), None" in sources[2] and "_begin_cell('test_f')" in sources[2]
    assert sources[3] == "print('my own cell')"


def test_the_graded_copy_holds_no_oracle_and_no_expected_value():
    source = '''
def _oracle(x, *, wrong=False):
    return 2 * x + (1 if wrong else 0)

def _helper(x):
    return _oracle(x) - 1

_gen = torch.Generator().manual_seed(0)
for n in range(3):
    x = torch.randn(n, generator=_gen)
    want = _oracle(x)
    unused = _helper(x)
    got = f(x)
    check_close("f", got, want, hint="h", mistakes={"m": _oracle(x, wrong=True)})
    check_true(bool(got.isfinite().all()), "finite", expected=_oracle(x), hint="h")
'''
    code = graded_copy.strip_reference(source, {"f"}, "test_f")
    tree = ast.parse(code)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    defs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert not defs and not {"_oracle", "_helper", "want", "unused"} & names, code
    assert "got = f(x)" in code and "check_close('f', got, None, hint='h')" in code
    assert "x = torch.randn(n, generator=_gen)" in code       # the inputs stay


def test_an_oracle_also_used_outside_expected_stops_the_batch():
    source = ('def _oracle(x):\n    return 2 * x\n'
              'check_true(bool(_oracle(1) == f(1)), "p", hint="h")\n'
              'check_close("f", f(1), _oracle(1), hint="h")\n')
    with pytest.raises(graded_copy.GradedCopyError, match="_oracle computes expected values"):
        graded_copy.strip_reference(source, {"f"}, "test_f")


def test_an_assignment_that_calls_the_answer_is_kept_even_if_unused():
    code = graded_copy.strip_reference('state = f(1)\ncheck_close("g", g(), 2, hint="h")\n',
                                   {"f", "g"})
    assert code.startswith("state = f(1)")


def test_numbers_of_any_honest_type_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(grading, "_journal_path", None)
    for value in (0.5, numpy.float64(0.5), numpy.float32(0.5), torch.tensor(0.5),
                  numpy.array(0.5), torch.tensor([0.5]).squeeze()):
        grading.check_close("x", value, 0.5, hint="h")
    grading.check_close("v", numpy.array([1.0, 2.0]), torch.tensor([1.0, 2.0]), hint="h")
    with pytest.raises(AssertionError, match="wrong type"):
        grading.check_close("x", "0.5", 0.5, hint="h")
    path = tmp_path / "journal.jsonl"
    monkeypatch.setattr(grading, "_journal_path", str(path))
    grading._begin_cell("test_x")
    grading.check_close("x", numpy.float64(0.5), None, hint="h")
    [line] = journal.read_journal(path.read_text())["test_x"]
    assert line["got"] == {"shape": [], "values": [0.5]}


def test_a_check_after_the_test_cell_ended_is_not_counted(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    monkeypatch.setattr(grading, "_journal_path", str(path))
    grading._begin_cell("test_x")
    grading.check_close("x", 1.0, None, hint="h")
    grading._end_cell()                       # what IPython's post_run_cell event calls
    with pytest.raises(AssertionError):
        grading.check_close("mine", 1.0, 2.0, hint="h")
    assert [e["name"] for e in journal.read_journal(path.read_text())["test_x"]] == ["x"]


def test_numeric_gradient_matches_a_closed_form():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.7]])
    grad = grading.numeric_gradient(lambda a: float((a ** 3).sum()), x)
    assert torch.allclose(grad, 3 * x.double() ** 2, atol=1e-6)
