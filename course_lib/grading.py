"""Helpers for the test cells of the graded notebooks (``solutions/``).

Every failed check raises ``AssertionError`` with the same four-part message: what was checked,
what was EXPECTED, what came back (GOT) and a HINT naming the likely mistake::

    check_close("info_nce(z, z, 0.5)", got, math.log(3), hint="...",
                mistakes={"self-similarity left in the denominator": math.log(4)})

``mistakes`` maps a hint to the value that mistake produces: an answer that matches one gets that
hint. ``forbid_reference`` fails a submission that calls the ``course_lib`` reference instead.

**Under the autograder** (``python -m autograder grade``) ``COURSE_GRADING_JOURNAL`` names a file
to which every check appends one JSON line: the test cell, the check's name, the student's value.
The grader compares it, outside the student's process, with the instructor's journal, so patching
``torch.allclose`` or ``isinstance``, or an object that equals anything, gains nothing. In the
graded copy of a test cell ``expected`` becomes ``None`` and ``mistakes`` are dropped: the right
answer is never computed inside the student's kernel, and ``check_close`` only records.

The in-kernel comparison (what a student sees while working) uses functions and types captured at
import, and accepts a number or a tensor of an exact type: ``torch.Tensor`` (or ``nn.Parameter``),
Python ``int`` and ``float``, numpy scalars and arrays (a subclass with its own ``__eq__`` is a
wrong type). A check counts only in the graded test cell it runs in: the grader tags each test
cell and the tag is cleared when any cell ends, so a ``check_*`` in a scratch cell records nothing.
"""
from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.util
import json
import os
import sys
from types import FunctionType, TracebackType
from typing import Any, Callable, Mapping

import numpy
import torch

# Per unit, what an answer could call instead of its own code (course_lib/references.py).
from .references import (DINO_REFERENCES, DINOV2_REFERENCES,  # noqa: E402,F401
                         EVALUATION_REFERENCES, IBOT_REFERENCES, IJEPA_REFERENCES,
                         INFONCE_REFERENCES, MAE_REFERENCES)

_forbidden_calls: list[str] = []   # names of references called inside a forbid_reference block

# Captured at import, before any student code runs in the kernel (see the module docstring).
_type, _open, _float, _len = builtins.type, builtins.open, builtins.float, builtins.len
_allclose, _detach, _tolist = torch.allclose, torch.Tensor.detach, torch.Tensor.tolist
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
# numpy's numeric scalars (numpy.float64 is a float subclass, numpy.float32 is not) and arrays.
_NUMPY_TYPES = frozenset(t for t in vars(numpy).values() if isinstance(t, type) and issubclass(
    t, (numpy.number, numpy.ndarray)) and t.__module__ == "numpy")
_from_numpy, _asarray = torch.from_numpy, numpy.asarray
_dumps = json.dumps

JOURNAL_ENV = "COURSE_GRADING_JOURNAL"
_journal_path: str | None = os.environ.get(JOURNAL_ENV) or None
_cell: str | None = None          # grade_id of the test cell running now (set by the grader)


def _begin_cell(grade_id: str) -> None:
    """Called by the grader at the top of each graded test cell: tag the journal lines until the
    cell ends (``_end_cell`` runs after every cell, whether it raised or not)."""
    global _cell
    _cell = grade_id
    _clear_tag_after_each_cell()


def _end_cell(*_: Any) -> None:
    global _cell
    _cell = None


def _clear_tag_after_each_cell() -> None:
    shell = getattr(builtins, "get_ipython", lambda: None)()
    if shell is not None and _end_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _end_cell)


def _plain(x: Any) -> Any:
    """A JSON-able copy of a tensor or number (exact types only), or None."""
    t = _as_tensor(x)
    return None if t is None else {"shape": list(t.shape), "values": _tolist(t.flatten())}


def _record(kind: str, name: str, **fields: Any) -> None:
    if _journal_path is None:
        return
    line = _dumps({"cell": _cell, "kind": kind, "name": str(name), **fields})
    with _open(_journal_path, "a") as handle:
        handle.write(line + "\n")


def _show(x: Any) -> str:
    text = repr(x.detach().cpu()) if isinstance(x, torch.Tensor) else repr(x)
    return text if len(text) <= 400 else text[:400] + " ..."


def fail(name: str, expected: Any, got: Any, hint: str) -> None:
    """Raise the course's AssertionError: what was checked, EXPECTED, GOT, HINT."""
    raise AssertionError(f"{name}\n  EXPECTED: {_show(expected)}\n  GOT:      {_show(got)}\n"
                         f"  HINT:     {hint}")


def _as_tensor(x: Any) -> torch.Tensor | None:
    """float64 CPU copy of a tensor or a number whose type is exactly one of the accepted ones."""
    kind = _type(x)
    if kind in _TENSOR_TYPES:
        return _detach(x).cpu().double()
    if kind in (int, float):
        return torch.tensor(_float(x), dtype=torch.float64)
    if kind in _NUMPY_TYPES and _asarray(x).dtype.kind in "iuf":
        return _from_numpy(_asarray(x, dtype="float64").copy())
    return None


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return a.shape == b.shape and _allclose(a, b, atol=atol, rtol=rtol)


def check_close(name: str, got: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4,
                hint: str, mistakes: Mapping[str, Any] | None = None) -> None:
    """Fail unless ``got`` (tensor or number) equals ``expected`` within tolerance, same shape.

    ``mistakes`` maps a hint to the value a known mistake gives; a match selects that hint.
    Infinities must match exactly (``-inf`` masks). Under the autograder the check is recorded
    (see the module docstring); with ``expected=None`` it is only recorded.
    """
    if _journal_path is not None:
        _record("close", name, got=_plain(got), got_type=_type(got).__name__,
                expected=None if expected is None else _plain(expected), atol=atol, rtol=rtol,
                hint=hint, mistakes={k: _plain(v) for k, v in (mistakes or {}).items()})
        if expected is None:
            return
    got_t, exp_t = _as_tensor(got), _as_tensor(expected)
    assert exp_t is not None, f"check_close: expected must be a tensor or number, not {type(expected)}"
    if got_t is None:
        fail(f"{name}: wrong type", f"a tensor or a number like {_show(expected)}",
             type(got).__name__, "return a torch tensor (did you forget the return statement?)")
    if got_t.shape != exp_t.shape:
        fail(f"{name}: wrong shape", tuple(exp_t.shape), tuple(got_t.shape), hint)
    if _close(got_t, exp_t, atol, rtol):
        return
    for mistake_hint, wrong in (mistakes or {}).items():
        wrong_t = _as_tensor(wrong)
        if wrong_t is not None and _close(got_t, wrong_t, atol, rtol):
            label = mistake_hint.split(":")[0]   # hints read "short label: explanation"
            fail(f"{name}: wrong values, matching a known mistake: {label}", expected, got,
                 mistake_hint)
    gaps = torch.where(got_t == exp_t, 0.0, (got_t - exp_t).abs())   # equal infinities: gap 0
    diff = gaps.nan_to_num(nan=float("inf")).max().item()
    fail(f"{name}: wrong values (largest difference {diff:.3g})", expected, got, hint)


def check_shape(name: str, got: Any, expected_shape: tuple[int, ...], hint: str) -> None:
    """Fail unless ``got`` is a tensor of shape ``expected_shape``."""
    shape = tuple(got.shape) if _type(got) in _TENSOR_TYPES or _type(got) in _NUMPY_TYPES \
        else _type(got).__name__
    _record("shape", name, got=list(shape) if _type(shape) is tuple else shape,
            expected=list(expected_shape), hint=hint)
    if shape != tuple(expected_shape):
        fail(f"{name}: wrong shape", tuple(expected_shape), shape, hint)


def check_true(condition: bool, name: str, *, expected: Any = "", got: Any = "",
               hint: str) -> None:
    """Fail with the course's message unless ``condition`` holds (exactly ``True``)."""
    _record("true", name, got=condition is True, hint=hint)
    if condition is not True:
        fail(name, expected, got, hint)


def run_answer(name: str, fn: Callable[..., Any], *args: Any, hint: str, **kwargs: Any) -> Any:
    """Call an answer; an unexpected error becomes the course's AssertionError with ``hint``."""
    try:
        return fn(*args, **kwargs)
    except (AssertionError, NotImplementedError):
        raise
    except Exception as error:  # noqa: BLE001 - any crash of the answer is reported the same way
        fail(f"{name} raised an error", "no error", f"{type(error).__name__}: {error}", hint)


def _resolve(dotted: str) -> tuple[Any, str, Any]:
    """'pkg.mod.Class.attr' -> (owner object, attribute name, current value)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError(f"forbid_reference: cannot import a module from {dotted!r}")


def _stub_code(dotted: str) -> Any:
    """Code object with no free variables that records the call and raises (for __code__ swaps)."""
    message = (f"your answer calls the course_lib reference implementation instead of your own "
               f"code ({dotted})\n  EXPECTED: your own computation\n  GOT:      a call of "
               f"{dotted}\n  HINT:     write it yourself with torch operations; the reference "
               "is there to read after the deadline, not to call in a graded answer")
    source = (f"def stub(*args, **kwargs):\n    import course_lib.grading as g\n"
              f"    g._forbidden_calls.append({dotted!r})\n    raise AssertionError({message!r})\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["stub"].__code__


def _module_of(dotted: str) -> str:
    """The module part of 'pkg.mod.Class.attr' ('pkg.mod'), found without importing it."""
    parts = dotted.split(".")
    for cut in range(1, len(parts)):
        name = ".".join(parts[:cut])
        try:
            spec = (sys.modules[name].__spec__ if name in sys.modules
                    else importlib.util.find_spec(name))
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            break
        if spec.submodule_search_locations is None:      # a module: the rest are attributes
            return name
    raise ValueError(f"forbid_reference: cannot import a module from {dotted!r}")


class _LoaderThenForbid(importlib.abc.Loader):
    """A module's own loader, and then the references in it forbidden before anyone can use it."""

    def __init__(self, loader: Any, after: Callable[[], None]) -> None:
        self.loader, self.after = loader, after

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.after()

    def __getattr__(self, name: str) -> Any:             # get_source, get_code, ...
        return getattr(self.loader, name)


class _ForbidOnImport(importlib.abc.MetaPathFinder):
    """Installed for the duration of a ``forbid_reference`` block whose reference modules were not
    imported yet: one of them imported inside the block has its references forbidden as soon as
    it has executed, before the import statement hands it (or a name from it) to the caller."""

    def __init__(self, pending: dict[str, list[str]], forbid: Callable[[str], None]) -> None:
        self.pending, self.forbid = pending, forbid

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                names = self.pending.pop(fullname)
                spec.loader = _LoaderThenForbid(spec.loader,
                                                lambda: [self.forbid(name) for name in names])
                return spec
        return None


class forbid_reference:  # noqa: N801 - used as a context manager, reads like a function
    """``with forbid_reference("course_lib.simclr.info_nce", ...):`` calls inside fail.

    Every function object named (and what it wraps, e.g. under ``@torch.no_grad()``) has its
    ``__code__`` swapped for a stub, so aliases made earlier (``from course_lib.simclr import
    info_nce as f``) fail too; names in ``course_lib`` modules, ``__main__`` and the caller's
    globals that are the reference are also replaced. A call the answer swallowed with
    ``try/except`` still fails the block. Everything is restored on exit, even on error.

    A reference module that is not imported yet is not imported here (importing timm and
    torchvision would cost every graded kernel seconds): nothing can hold one of its functions,
    and if the answer imports it inside the block, the module's references are forbidden the
    moment it has executed (an import hook installed for the block only).
    """

    def __init__(self, *dotted_names: str) -> None:
        self.dotted_names = dotted_names
        self.caller_globals: dict[str, Any] = sys._getframe(1).f_globals
        self._undo: list[tuple[Any, str, Any]] = []   # (object, attribute, original value)

    def __enter__(self) -> "forbid_reference":
        self._n_calls = len(_forbidden_calls)
        self._finder: _ForbidOnImport | None = None
        try:
            pending: dict[str, list[str]] = {}
            for dotted in self.dotted_names:
                module = _module_of(dotted)
                if module in sys.modules:
                    self._forbid(dotted)
                else:
                    pending.setdefault(module, []).append(dotted)
            if pending:
                self._finder = _ForbidOnImport(pending, self._forbid)
                sys.meta_path.insert(0, self._finder)
        except BaseException:
            self._restore()
            raise
        return self

    def _forbid(self, dotted: str) -> None:
        owner, attr, original = _resolve(dotted)
        code = _stub_code(dotted)
        fn: Any = original
        while isinstance(fn, FunctionType):
            if not fn.__code__.co_freevars:
                self._undo.append((fn, "__code__", fn.__code__))
                fn.__code__ = code
            fn = getattr(fn, "__wrapped__", None)
        stub = FunctionType(code, {}, dotted.rsplit(".", 1)[-1])
        namespaces = [vars(m) for name, m in list(sys.modules.items())
                      if name.split(".")[0] == "course_lib" and m is not None]
        namespaces += [vars(sys.modules["__main__"]), self.caller_globals]
        if isinstance(owner, type):   # a method: patch the class attribute
            self._undo.append((owner, attr, owner.__dict__[attr]))
            setattr(owner, attr, stub)
        for ns in namespaces:
            for key, value in list(ns.items()):
                if value is original:
                    self._undo.append((ns, key, value))
                    ns[key] = stub

    def _restore(self) -> None:
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._finder = None
        for target, key, value in reversed(self._undo):
            if isinstance(target, dict):
                target[key] = value
            else:
                setattr(target, key, value)
        self._undo.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()
        calls = _forbidden_calls[self._n_calls:]
        del _forbidden_calls[self._n_calls:]
        if calls and (exc is None or "course_lib reference" not in str(exc)):
            # The answer swallowed the stub's error (try/except) and then failed, or not at all:
            # the reference call is still the cause to report.
            raise AssertionError(f"your answer calls the course_lib reference implementation "
                                 f"instead of your own code ({calls[0]}), and hid the error") from exc


def numeric_gradient(f: Callable[[torch.Tensor], Any], x: torch.Tensor,
                     eps: float = 1e-6) -> torch.Tensor:
    """Central differences of the scalar ``f`` at ``x`` in float64, entry by entry.

    An independent check of a gradient for the ``expected`` argument of ``check_close`` (where
    the grader runs it in the instructor's solution only): ``f`` is a slow reference loop, not the
    answer under test.
    """
    point = _detach(x).cpu().double().clone()
    grad = torch.zeros_like(point)
    flat, out = point.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        centre = flat[i].item()
        flat[i] = centre + eps
        up = _float(f(point))
        flat[i] = centre - eps
        down = _float(f(point))
        flat[i] = centre
        out[i] = (up - down) / (2 * eps)
    return grad
