"""Cutting a test cell down to what a student's kernel may run: no oracle, no expected value.

``strip_reference`` takes an instructor's test cell and returns the code that calls the student's
functions on fixed inputs and records what they return (``course_lib.grading``), and nothing else:

1. ``check_close``'s ``expected`` argument becomes ``None`` and its ``mistakes`` are dropped, as is
   ``check_true``'s descriptive ``expected=`` (``_DropExpected``);
2. every definition and plain assignment that nothing reads any more is removed, again and again
   until none is left (``_drop_dead_definitions``): the reference loops, their helpers and the
   variables that held an expected value go; an assignment that calls an answer stays;
3. a function that computes an expected value and is still there (used outside an ``expected``
   argument too) raises ``GradedCopyError``, which stops the batch before any student is graded.

The template (``template.py``) then runs the solution through the cut cells and checks that it
still scores full marks, which catches a removed statement that changed the test's inputs.
"""
from __future__ import annotations

import ast

from nbformat import NotebookNode

from .notebooks import SOLUTION, is_solution, without_markers


# Arguments that only describe or compute the right answer; the graded copy drops them.
_EXPECTED_ARGS = {"check_close": (2, ("expected", "mistakes")), "check_true": (None, ("expected",))}


class GradedCopyError(ValueError):
    """A test cell cannot be sent to a student's kernel without an oracle (an instructor's bug)."""


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else \
        func.attr if isinstance(func, ast.Attribute) else None


class _DropExpected(ast.NodeTransformer):
    """``check_close(name, got, expected, ..., mistakes=...)`` -> ``check_close(name, got, None,
    ...)``; ``check_true``'s descriptive ``expected=`` goes too. ``dropped`` keeps what was cut."""

    def __init__(self) -> None:
        self.dropped: list[ast.AST] = []

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        position, keywords = _EXPECTED_ARGS.get(_call_name(node) or "", (None, ()))
        if position is not None and len(node.args) > position:
            self.dropped.append(node.args[position])
            node.args[position] = ast.Constant(None)
        kept = []
        for keyword in node.keywords:
            if keyword.arg in keywords:
                self.dropped.append(keyword.value)
                if keyword.arg == "expected" and _call_name(node) == "check_close":
                    kept.append(ast.keyword("expected", ast.Constant(None)))
            else:
                kept.append(keyword)
        node.keywords = kept
        return node


def _loaded_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _bound_names(statement: ast.stmt) -> set[str] | None:
    """Names a definition or a plain assignment binds; None for any other statement."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    targets = statement.targets if isinstance(statement, ast.Assign) else \
        [statement.target] if isinstance(statement, ast.AnnAssign) and statement.value else None
    if targets is None:
        return None
    names: set[str] = set()
    for target in targets:
        parts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        if not all(isinstance(part, ast.Name) for part in parts):
            return None
        names.update(part.id for part in parts)
    return names


def _drop_dead_definitions(tree: ast.Module, answers: set[str]) -> None:
    """Remove, until none is left, every definition and assignment whose names nothing reads any
    more (the oracles, once their calls in ``expected`` arguments are gone). An assignment that
    calls the student's code is kept: its side effects are part of the test."""
    while True:
        loaded = _loaded_names(tree)
        removed = False
        for node in ast.walk(tree):
            for attr in ("body", "orelse", "finalbody"):
                body = getattr(node, attr, None)
                if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                    continue
                kept = [s for s in body if not _is_dead(s, loaded, answers)]
                if len(kept) != len(body):
                    removed = True
                    setattr(node, attr, kept or [ast.Pass()])
        if not removed:
            return


def _is_dead(statement: ast.stmt, loaded: set[str], answers: set[str]) -> bool:
    names = _bound_names(statement)
    if not names or names & loaded:
        return False
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        return not _loaded_names(statement.value) & answers
    return True


def _oracles(tree: ast.Module, dropped: list[ast.AST]) -> set[str]:
    """Functions and classes of the cell that compute an expected value, directly or through
    another such function."""
    defs = {s.name: s for s in ast.walk(tree)
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    todo = [name for expr in dropped for name in _loaded_names(expr) if name in defs]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += [n for n in _loaded_names(defs[name]) if n in defs and n != name]
    return found


def strip_reference(code: str, answers: set[str], cell_id: str = "") -> str:
    """The test cell as a student's kernel runs it: it calls the answers on fixed inputs and
    records what they return, and holds no expected value and no oracle.

    ``expected`` and ``mistakes`` arguments are dropped (``_DropExpected``), then every definition
    and assignment nothing reads any more (``_drop_dead_definitions``). Raises
    ``GradedCopyError`` if a function that computes an expected value is still there (it is also
    used outside an ``expected`` argument), so an instructor finds out when the batch starts.
    """
    tree = ast.parse(code)                       # a test cell that does not parse fails the build
    dropper = _DropExpected()
    tree = dropper.visit(tree)
    oracles = _oracles(tree, dropper.dropped)
    _drop_dead_definitions(tree, answers)
    left = oracles & ({s.name for s in ast.walk(tree) if isinstance(
        s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))} | _loaded_names(tree))
    if left:
        raise GradedCopyError(
            f"test cell {cell_id}: {', '.join(sorted(left))} computes expected values and is also "
            "used outside an expected argument, so it would run in the student's kernel; use it "
            "only inside check_close(..., expected, mistakes=...)")
    return ast.unparse(ast.fix_missing_locations(tree))


def answer_names(source_nb: NotebookNode) -> frozenset[str]:
    """Names the answer cells define (the functions a student writes)."""
    names: set[str] = set()
    for cell in source_nb.cells:
        if cell.cell_type == "code" and is_solution(cell):
            try:
                tree = ast.parse(without_markers(cell.source, SOLUTION))
            except SyntaxError:
                continue
            for statement in tree.body:
                names |= _bound_names(statement) or set()
    return frozenset(names)
