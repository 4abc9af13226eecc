"""Runs a graded notebook of ``solutions/`` in-process, cell by cell, for the contract test
(``tests/test_notebook_contract.py``) and each unit's table of mistakes (``tests/test_mutations_*``).

A notebook is executed top to bottom in a fresh namespace, with IPython magics (which only run on
Colab) turned into ``pass``. Any code cell can be replaced (a *mutant*: a plausible wrong answer;
or a test cell cut down to its hidden part), and the release can be simulated (solutions stubbed
with ``raise NotImplementedError()`` as nbgrader does, hidden tests removed). The result is the
exception each graded test cell raised (or None) and everything written to stderr, warnings
included: nbgrader scores a test cell that writes to stderr zero.
"""
from __future__ import annotations

import contextlib
import io
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import nbformat

from autograder.notebooks import HIDDEN_TESTS, SOLUTION, nbgrader_meta, replace_region

REPO = Path(__file__).resolve().parents[1]
MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.M)


def fn(source: str) -> str:
    """A mutant's source, written indented in a table."""
    return textwrap.dedent(source).strip() + "\n"


def release_source(source: str) -> str:
    """What the student release shows: solutions stubbed (as nbgrader does), hidden tests gone."""
    stubbed = replace_region(source, lambda indent: [f"{indent}raise NotImplementedError()"],
                             SOLUTION)
    return replace_region(stubbed, lambda indent: [], HIDDEN_TESTS)


@dataclass
class Notebook:
    """One graded notebook, ``solutions/<assignment>/<name>``."""
    path: Path
    table: list[tuple[str, str, str]] = field(default_factory=list)   # mistake, cell, message

    @cached_property
    def cells(self) -> list:
        return nbformat.read(self.path, as_version=4).cells

    def source(self, grade_id: str) -> str:
        return next(c.source for c in self.cells if nbgrader_meta(c).get("grade_id") == grade_id)

    def hidden_part(self, test_cell: str) -> str:
        source = self.source(test_cell)
        return source[source.index("### BEGIN HIDDEN TESTS"):]

    def run(self, replace: dict[str, str] | None = None, *, release: bool = False,
            stop_after: str | None = None,
            only_test: bool = False) -> tuple[dict[str, BaseException | None], str]:
        """Execute the code cells in order, up to the cell ``stop_after``.

        Returns ({test grade_id: exception or None}, stderr text including warnings). The set-up
        and settings cells must run without error; an answer cell may raise (a release stub does,
        as in Jupyter), and the next cells still run. With ``only_test``, the test cells before
        ``stop_after`` are skipped (a mutant is judged by one test cell; the others only cost time).
        """
        replace = replace or {}
        namespace: dict = {"__name__": "__main__"}
        results: dict[str, BaseException | None] = {}
        stderr = io.StringIO()
        for cell in self.cells:
            if cell.cell_type != "code":
                continue
            meta = nbgrader_meta(cell)
            grade_id = meta["grade_id"]
            if (only_test and grade_id != stop_after and meta.get("grade")
                    and not meta.get("solution")):
                continue
            source = replace.get(grade_id, cell.source)
            code = compile(MAGIC.sub(r"\1pass", release_source(source) if release else source),
                           f"<cell {grade_id}>", "exec")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")     # nbgrader sees a warning as stderr output
                error = _execute(code, namespace, graded=bool(meta.get("grade")
                                                             or meta.get("solution")))
            if meta.get("grade"):
                results[grade_id] = error
            elif error is not None and not (release and isinstance(error, NotImplementedError)):
                raise error
            stderr.writelines(f"{w.category.__name__}: {w.message}\n" for w in caught)
            if grade_id == stop_after:
                break
        return results, stderr.getvalue()

    def assert_caught(self, mistake: str, solution_cell: str, test_cell: str, keyword: str,
                      mutant: str, *, hidden_only: bool = False) -> None:
        """The test cell fails on the mutant with an AssertionError whose message names the
        mistake (``keyword``); with ``hidden_only``, the hidden part of the cell alone does."""
        replace = {solution_cell: mutant}
        if hidden_only:
            replace[test_cell] = self.hidden_part(test_cell)
        results, _ = self.run(replace, stop_after=test_cell, only_test=True)
        error = results[test_cell]
        where = "hidden tests" if hidden_only else test_cell
        assert isinstance(error, AssertionError), \
            f"{mistake}: {where} gave {error!r}, not a failed check"
        message = str(error)
        if not hidden_only:
            self.table.append((mistake, test_cell, message.splitlines()[0] if message else ""))
        assert keyword.lower() in message.lower(), \
            f"{mistake}: message lacks {keyword!r}:\n{message}"

    def print_table(self) -> None:
        if self.table:
            width, cells = (max(len(row[i]) for row in self.table) for i in (0, 1))
            print("\n\n" + "mistake".ljust(width) + " | " + "test cell".ljust(cells)
                  + " | first line of the message")
            for mistake, cell, first_line in self.table:
                print(f"{mistake.ljust(width)} | {cell.ljust(cells)} | {first_line}")


def _execute(code, namespace: dict, *, graded: bool) -> BaseException | None:
    """Run one cell; a graded or answer cell's error is returned, any other cell's raised."""
    if not graded:
        exec(code, namespace)
        return None
    try:
        exec(code, namespace)
    except Exception as error:  # noqa: BLE001 - recorded and judged by the test
        return error
    return None


def solution_notebooks() -> list[Path]:
    return sorted(REPO.glob("solutions/*/*.ipynb"))


class Template:
    """A solution with {placeholders}; ``format(**changes)`` fills the others with the solution's
    own code, so that each mutant below reads as the one line it changes."""

    def __init__(self, source: str, **defaults: str) -> None:
        self.source, self.defaults = source, defaults

    def format(self, **changes: str) -> str:
        unknown = set(changes) - set(self.defaults)
        assert not unknown, f"no placeholder {unknown}"
        return self.source.format(**{**self.defaults, **changes})


PARAMETERS = "mistake, solution_cell, test_cell, keyword, mutant"


def mutation_tests(notebook: Notebook, mutants: list[tuple], *, hidden_alone: bool = True,
                   alternatives: list[tuple] = ()) -> dict:
    """The tests every unit's mutation file runs over its table ``mutants`` of (mistake, answer
    cell, test cell, keyword of the expected message, mutant source): each mutant is caught with a
    message naming the mistake, by the whole test cell and (``hidden_alone``) by its hidden part
    alone; the table is printed at the end. ``alternatives`` (answer, answer cell, source): right
    answers written another way, which must pass every test cell silently (the tests check the
    method, not one way of coding it). Bind them in the module: ``globals().update(...)``."""
    import pytest
    ids = [m[0] for m in mutants]

    @pytest.fixture(scope="module", autouse=True)
    def print_table():
        yield
        notebook.print_table()

    @pytest.mark.parametrize(PARAMETERS, mutants, ids=ids)
    def test_mutant_is_caught_with_a_message_naming_the_mistake(mistake, solution_cell, test_cell,
                                                                keyword, mutant):
        notebook.assert_caught(mistake, solution_cell, test_cell, keyword, mutant)

    @pytest.mark.parametrize(PARAMETERS, mutants, ids=ids)
    def test_hidden_tests_alone_catch_and_name_the_mistake(mistake, solution_cell, test_cell,
                                                           keyword, mutant):
        notebook.assert_caught(mistake, solution_cell, test_cell, keyword, mutant,
                               hidden_only=True)

    tests = {"print_table": print_table,
             "test_mutant_is_caught_with_a_message_naming_the_mistake":
                 test_mutant_is_caught_with_a_message_naming_the_mistake}
    if hidden_alone:
        tests["test_hidden_tests_alone_catch_and_name_the_mistake"] = \
            test_hidden_tests_alone_catch_and_name_the_mistake
    if alternatives:
        @pytest.mark.parametrize("answer, solution_cell, source", alternatives,
                                 ids=[a[0] for a in alternatives])
        def test_other_right_answers_pass_every_test_cell(answer, solution_cell, source):
            results, stderr = notebook.run({solution_cell: source})
            failed = {cell: str(err) for cell, err in results.items() if err is not None}
            assert not failed, f"{answer} fails: {failed}"
            assert stderr == "", f"{answer} writes to stderr: {stderr!r}"

        tests["test_other_right_answers_pass_every_test_cell"] = \
            test_other_right_answers_pass_every_test_cell
    return tests
