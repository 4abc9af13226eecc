"""Mutation tests for solutions/01_infonce/infonce.ipynb: the graded test cells catch the common
mistakes, each with a message that names the mistake.

The notebook is executed in-process, cell by cell, in a fresh namespace (IPython magics, which
only run on Colab, become ``pass``). One solution cell is replaced by a MUTANT, a plausible wrong
answer written out below; the graded test cell that goes with it must raise AssertionError whose
message contains the mistake's keyword. The unmodified solution must pass every test cell without
writing to stderr, and the release stubs (``raise NotImplementedError()``) must fail every one.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations

import contextlib
import io
import re
import textwrap
import warnings
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "01_infonce" / "infonce.ipynb"
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*\n?",
                      re.M | re.S)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?",
                    re.M | re.S)
MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.M)


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def load_cells() -> list:
    return nbformat.read(NOTEBOOK, as_version=4).cells


def release_source(source: str) -> str:
    """What the student release shows: solutions stubbed (as nbgrader does), hidden tests gone."""
    source = SOLUTION.sub(lambda m: f"{m.group(1)}raise NotImplementedError()\n", source)
    return HIDDEN.sub("", source)


def run_notebook(replace: dict[str, str] | None = None, *, release: bool = False,
                 stop_after: str | None = None):
    """Execute the code cells in order in a fresh namespace, up to the cell ``stop_after``.

    Returns ({test grade_id: exception or None}, stderr text including warnings). Cells that are
    not graded tests must run without error (a mutant solution cell only defines a function).
    """
    replace = replace or {}
    namespace: dict = {"__name__": "__main__"}
    results: dict[str, BaseException | None] = {}
    stderr = io.StringIO()
    for cell in load_cells():
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        grade_id = meta["grade_id"]
        source = replace.get(grade_id, cell.source)
        if release:
            source = release_source(source)
        code = compile(MAGIC.sub(r"\1pass", source), f"<cell {grade_id}>", "exec")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")     # nbgrader sees a warning as stderr output
            if meta.get("grade"):
                try:
                    exec(code, namespace)
                    results[grade_id] = None
                except Exception as error:  # noqa: BLE001 - recorded and judged by the test
                    results[grade_id] = error
            else:
                exec(code, namespace)
        stderr.writelines(f"{w.category.__name__}: {w.message}\n" for w in caught)
        if grade_id == stop_after:
            break
    return results, stderr.getvalue()


def fn(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


# (mistake, solution cell replaced, test cell that must fail, keyword in the message, mutant)
MUTANTS = [
    ("similarity: self-similarity left on the diagonal", "solution_similarity_matrix",
     "test_similarity_matrix", "self-similarity", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            return z @ z.T / temperature
     ''')),
    ("similarity: no L2 normalisation", "solution_similarity_matrix", "test_similarity_matrix",
     "normalis", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = torch.cat([z1, z2])
            sim = z @ z.T / temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: temperature multiplied", "solution_similarity_matrix", "test_similarity_matrix",
     "temperature", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            sim = z @ z.T * temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: views interleaved", "solution_similarity_matrix", "test_similarity_matrix",
     "wrong order", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = F.normalize(torch.stack([z1, z2], dim=1).reshape(-1, z1.shape[1]), dim=1)
            sim = z @ z.T / temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: normalises the inputs in place", "solution_similarity_matrix",
     "test_similarity_matrix", "in place", fn('''
        def similarity_matrix(z1, z2, temperature):
            z1 /= z1.norm(dim=1, keepdim=True)
            z2 /= z2.norm(dim=1, keepdim=True)
            z = torch.cat([z1, z2])
            sim = z @ z.T / temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: calls the course_lib reference", "solution_similarity_matrix",
     "test_similarity_matrix", "reference", fn('''
        from course_lib.simclr import similarity_matrix as _reference_similarity
        def similarity_matrix(z1, z2, temperature):
            return _reference_similarity(z1, z2, temperature)
     ''')),
    ("info_nce: self-similarity left in the denominator", "solution_info_nce", "test_info_nce",
     "self-similarity", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            logits = z @ z.T / temperature
            return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
     ''')),
    ("info_nce: one direction only (N anchors of view 1)", "solution_info_nce", "test_info_nce",
     "2N anchors", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            sim = similarity_matrix(z1, z2, temperature)
            return F.cross_entropy(sim[:n], torch.arange(n, 2 * n))
     ''')),
    ("info_nce: no L2 normalisation", "solution_info_nce", "test_info_nce", "normalis", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            z = torch.cat([z1, z2])
            logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
            return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
     ''')),
    ("info_nce: temperature multiplied", "solution_info_nce", "test_info_nce", "temperature", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            logits = (z @ z.T * temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
            return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
     ''')),
    ("info_nce: calls the course_lib reference", "solution_info_nce", "test_info_nce",
     "reference", fn('''
        import course_lib.simclr
        def info_nce(z1, z2, temperature):
            return course_lib.simclr.info_nce(z1, z2, temperature)
     ''')),
    ("negative_gradient: 1/tau missing", "solution_negative_gradient", "test_negative_gradient",
     "temperature", fn('''
        def negative_gradient(n_pairs, s_pos, s_neg, temperature):
            return 1.0 / (math.exp((s_pos - s_neg) / temperature) + 2 * n_pairs - 2)
     ''')),
    ("negative_gradient: the anchor counted as a candidate", "solution_negative_gradient",
     "test_negative_gradient", "self-similarity", fn('''
        def negative_gradient(n_pairs, s_pos, s_neg, temperature):
            return 1.0 / (math.exp((s_pos - s_neg) / temperature) + 2 * n_pairs - 1) / temperature
     ''')),
    ("enqueue: always writes at index 0", "solution_enqueue", "test_enqueue", "FIFO", fn('''
        def enqueue(queue, ptr, keys):
            queue[: len(keys)] = F.normalize(keys.detach(), dim=1)
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: overwrites the newest (pointer not advanced)", "solution_enqueue", "test_enqueue",
     "FIFO", fn('''
        def enqueue(queue, ptr, keys):
            rows = (ptr + torch.arange(len(keys))) % len(queue)
            queue[rows] = F.normalize(keys.detach(), dim=1)
            return ptr
     ''')),
    ("enqueue: no wrap-around (slice past the end)", "solution_enqueue", "test_enqueue", "wrap",
     fn('''
        def enqueue(queue, ptr, keys):
            queue[ptr: ptr + len(keys)] = F.normalize(keys.detach(), dim=1)
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: keys not normalised", "solution_enqueue", "test_enqueue", "normalis", fn('''
        def enqueue(queue, ptr, keys):
            rows = (ptr + torch.arange(len(keys))) % len(queue)
            queue[rows] = keys.detach()
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: keys stored with their graph", "solution_enqueue", "test_enqueue", "detach", fn('''
        def enqueue(queue, ptr, keys):
            rows = (ptr + torch.arange(len(keys))) % len(queue)
            queue[rows] = F.normalize(keys, dim=1)
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: calls the course_lib reference", "solution_enqueue", "test_enqueue", "reference",
     fn('''
        from course_lib.moco import MoCoQueue
        def enqueue(queue, ptr, keys):
            buffer = MoCoQueue(queue.shape[1], queue.shape[0])
            buffer.queue, buffer.ptr = queue, torch.tensor(ptr)
            buffer.enqueue(keys)
            return int(buffer.ptr)
     ''')),
    ("momentum: wrong direction (t <- m s + (1-m) t)", "solution_momentum_update",
     "test_momentum_update", "wrong direction", fn('''
        def momentum_update(teacher, student, m):
            with torch.no_grad():
                for t, s in zip(teacher.parameters(), student.parameters()):
                    t.copy_(m * s + (1 - m) * t)
     ''')),
    ("momentum: new Parameter objects (not in place)", "solution_momentum_update",
     "test_momentum_update", "in place", fn('''
        def momentum_update(teacher, student, m):
            for module_t, module_s in zip(teacher.modules(), student.modules()):
                for name, t in list(module_t.named_parameters(recurse=False)):
                    s = getattr(module_s, name)
                    new = nn.Parameter((m * t + (1 - m) * s).detach(), requires_grad=False)
                    setattr(module_t, name, new)
     ''')),
    ("momentum: update recorded by autograd (no torch.no_grad)", "solution_momentum_update",
     "test_momentum_update", "no_grad", fn('''
        def momentum_update(teacher, student, m):
            for t, s in zip(teacher.parameters(), student.parameters()):
                t.mul_(m).add_((1 - m) * s)
     ''')),
    ("momentum: calls the course_lib reference", "solution_momentum_update",
     "test_momentum_update", "reference", fn('''
        from course_lib import ema
        def momentum_update(teacher, student, m):
            ema.ema_update(teacher, student, m)
     ''')),
    ("uniformity: pairs (i, i) included", "solution_uniformity", "test_uniformity",
     "distinct pairs", fn('''
        def uniformity(z, t=2.0):
            z = F.normalize(z, dim=1)
            return torch.log(torch.exp(-t * torch.cdist(z, z) ** 2).mean())
     ''')),
    ("uniformity: no L2 normalisation", "solution_uniformity", "test_uniformity", "normalis", fn('''
        def uniformity(z, t=2.0):
            return torch.log(torch.exp(-t * torch.pdist(z) ** 2).mean())
     ''')),
    ("uniformity: calls the course_lib reference", "solution_uniformity", "test_uniformity",
     "reference", fn('''
        from course_lib.diagnostics import uniformity as _reference_uniformity
        def uniformity(z, t=2.0):
            return _reference_uniformity(z, t)
     ''')),
]

TABLE: list[tuple[str, str, str]] = []


@pytest.fixture(scope="module", autouse=True)
def print_table():
    yield
    if TABLE:
        width = max(len(row[0]) for row in TABLE)
        print("\n\nmistake".ljust(width + 2) + " | test cell              | first line of the message")
        for mistake, cell, first_line in TABLE:
            print(f"{mistake.ljust(width)} | {cell.ljust(22)} | {first_line}")


def test_solution_passes_every_test_cell_silently():
    results, stderr = run_notebook()
    failed = {cell: repr(err) for cell, err in results.items() if err is not None}
    assert not failed, f"the solution fails test cells: {failed}"
    assert len(results) == 6
    assert stderr == "", f"the solution writes to stderr (scores zero in nbgrader): {stderr!r}"


def test_release_stub_fails_every_code_test_cell():
    results, _ = run_notebook(release=True)
    assert results and all(isinstance(err, NotImplementedError) for err in results.values()), results


def test_release_stub_is_valid_python_that_keeps_signature_and_docstring():
    for cell in load_cells():
        if cell.cell_type == "code" and nbgrader_meta(cell).get("solution"):
            stub = release_source(cell.source)
            compile(stub, nbgrader_meta(cell)["grade_id"], "exec")
            assert stub.lstrip().startswith("def ") and '"""' in stub and "NotImplementedError" in stub


def test_every_solution_has_a_test_cell_and_points_add_up():
    metas = [nbgrader_meta(c) for c in load_cells()]
    assert all(m.get("schema_version") == 3 for m in metas)
    ids = [m["grade_id"] for m in metas]
    assert len(ids) == len(set(ids))
    for m in metas:
        if m.get("solution") and not m.get("grade"):
            assert "test_" + m["grade_id"].removeprefix("solution_") in ids
    assert sum(m.get("points", 0) for m in metas if m.get("grade")) == 17


@pytest.mark.parametrize("mistake, solution_cell, test_cell, keyword, mutant", MUTANTS,
                         ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught_with_a_message_naming_the_mistake(mistake, solution_cell, test_cell,
                                                            keyword, mutant):
    results, _ = run_notebook({solution_cell: mutant}, stop_after=test_cell)
    error = results[test_cell]
    assert isinstance(error, AssertionError), f"{mistake}: {test_cell} gave {error!r}, not a failed check"
    message = str(error)
    TABLE.append((mistake, test_cell, message.splitlines()[0] if message else ""))
    assert keyword.lower() in message.lower(), f"{mistake}: message lacks {keyword!r}:\n{message}"
