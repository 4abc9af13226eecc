"""The feedback page a student gets back: their notebook, the verdict of each test, no leaks.

Written here rather than by ``nbgrader generate_feedback``, which shows the hidden tests' source
and the traceback of the failing hidden line. The page shows:

- a table of the autograded test cells: points, and for a failed one the teaching message (the
  check's name, its hint or the known mistake it matched; never the hidden test's source);
- the notebook as submitted: answer cells with their outputs; each test cell with its *released*
  source (the visible tests only) and the verdict in place of its outputs.

Everything the student's code printed is escaped (no HTML or script from a submission reaches the
page), only text and PNG images are shown, and an output that contains a line of the hidden tests
or of the solutions (code that printed ``In``, ``_ih`` or a frame's source), disguised or not, is
replaced by a notice (``redact.Redactor``).

``python -m autograder feedback ASSIGNMENT --term DIR`` puts the hand-graded part (each written
answer's points and comment, the late penalty and the total: ``manual_part``) into a copy of each
page, in the slot ``render`` and ``status_page`` leave for it (``with_manual_part``).
"""
from __future__ import annotations

import base64
import html
import re

import mistune
from nbformat import NotebookNode

from .journal import Verdict
from .notebooks import grade_id, is_test
from .redact import Redactor, printable

MAX_OUTPUT_CHARS = 20000
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_markdown = mistune.create_markdown(escape=True, plugins=["table"])
# Where ``with_manual_part`` puts the written answers' scores and the total (``feedback --term``).
MANUAL_SLOT = "<!-- written answers and total -->"

STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
line-height:1.45}pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap}
.out{background:#fff;border-left:3px solid #ccc}.pass{color:#116329}.fail{color:#a40e26}
.test{border:1px solid #d0d7de;border-radius:6px;padding:.2rem .8rem;margin:1rem 0}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.2rem .5rem;text-align:left}
"""


def _redact(text: str, redactor: Redactor) -> str:
    text = redactor.clean(ANSI.sub("", text), "[output removed: it contained lines of the "
                                              "grader's hidden tests or solutions]")
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n[... {len(text) - MAX_OUTPUT_CHARS} more characters]"
    return text


def _outputs(cell: NotebookNode, redactor: Redactor) -> str:
    parts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            text = str(output.get("text", ""))
        elif kind == "error":
            text = "\n".join(str(line) for line in output.get("traceback", [])) or \
                f"{output.get('ename')}: {output.get('evalue')}"
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            png = data.get("image/png")
            if isinstance(png, str) and len(png) < 4_000_000:
                try:
                    base64.b64decode(png, validate=False)
                    parts.append(f'<img alt="figure" src="data:image/png;base64,{html.escape(png)}">')
                    continue
                except ValueError:
                    pass
            text = str(data.get("text/plain", ""))
        else:
            continue
        parts.append(f'<pre class="out">{html.escape(_redact(text, redactor))}</pre>')
    return "\n".join(parts)


def _verdict_html(v: Verdict) -> str:
    mark = "pass" if v.passed else "fail"
    head = (f'<p class="{mark}"><b>{"passed" if v.passed else "failed"}: '
            f"{v.score:g} / {v.max_score:g} points</b></p>")
    body = "".join(f"<pre>{html.escape(m)}</pre>" for m in v.messages)
    return head + body


def render(student_id: str, assignment: str, notebook: str, executed: NotebookNode,
           released: dict[str, str], verdicts: dict[str, Verdict], redactor: Redactor,
           notes: list[str]) -> str:
    """The HTML page. ``released``: test grade_id -> the released (visible) source."""
    student_id, notes = printable(student_id), [printable(n) for n in notes]
    total = sum(v.score for v in verdicts.values())
    top = sum(v.max_score for v in verdicts.values())
    rows = "".join(
        f'<tr><td>{html.escape(v.grade_id)}</td><td class="{"pass" if v.passed else "fail"}">'
        f"{v.score:g} / {v.max_score:g}</td><td>{html.escape(v.messages[0] if v.messages else '')}"
        "</td></tr>" for v in verdicts.values())
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Feedback: "
             f"{html.escape(assignment)}/{html.escape(notebook)}</title><style>{STYLE}</style>"
             f"</head><body>\n<h1>{html.escape(assignment)} / {html.escape(notebook)}: "
             f"{html.escape(student_id)}</h1>\n<p><b>Autograded score: {total:g} / {top:g}</b>. "
             "Written answers are graded by hand and are not included.</p>\n"
             f"{MANUAL_SLOT}\n"
             f"<table><tr><th>test</th><th>points</th><th>first problem</th></tr>{rows}</table>\n"
             + (f"<ul>{note_html}</ul>\n" if notes else "")]
    for cell in executed.cells:
        gid = grade_id(cell)
        if cell.cell_type == "markdown":
            parts.append(_markdown(str(cell.source)))
        elif cell.cell_type == "code" and is_test(cell) and gid in verdicts:
            parts.append(f'<div class="test"><pre>{html.escape(released.get(gid, ""))}</pre>'
                         f"{_verdict_html(verdicts[gid])}</div>")
        elif cell.cell_type == "code":
            parts.append(f"<pre>{html.escape(str(cell.source))}</pre>\n{_outputs(cell, redactor)}")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def status_page(student_id: str, assignment: str, notebook: str, status: str, reason: str,
                score: float, max_score: float) -> str:
    """The page of a submission that has no graded notebook to show (missing, refused, stopped)."""
    explain = {
        "timeout": "Grading your notebook took longer than the time allowed for a whole "
                   "notebook, so it was stopped. Usually one cell runs far longer than it should "
                   "(a loop that never ends, a run at the GPU scale on the grading CPU).",
        "error": "The grader could not run your notebook. Check that you submitted the .ipynb "
                 "file itself (Colab: File > Download > Download .ipynb), that it opens in "
                 "Jupyter, and that it runs top to bottom.",
        "missing": "No notebook was found in your submission.",
        "memory": "Your notebook used more memory than grading allows, so it was stopped. Look "
                  "for a tensor far larger than the exercise needs.",
    }.get(status, "The grader could not produce the usual feedback page.")
    esc = lambda text: html.escape(printable(text))  # noqa: E731
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>Feedback: {esc(assignment)}/{esc(notebook)}</title></head>\n"
            f"<body>\n<h1>{esc(assignment)} / {esc(notebook)}: {esc(student_id)}</h1>\n"
            f"<p><b>Status: {status}</b> ({esc(reason)})</p>\n<p>{explain}</p>\n{MANUAL_SLOT}\n"
            f"<p>Autograded score: {score:g} / {max_score:g}. Contact the course staff if you "
            f"think this is wrong.</p>\n</body></html>\n")


def manual_part(answers: list[dict[str, str]], summary: list[tuple[str, str]]) -> str:
    """HTML of the hand-graded part: each written answer's points and the grader's comment
    (``manual.csv`` rows of one notebook), then the assignment's lines (``summary``: label,
    value), the total last."""
    rows = "".join(
        f"<tr><td>{html.escape(printable(a['grade_id']))}</td><td>{html.escape(a['score'])} / "
        f"{html.escape(a['max_score'])}</td><td style=\"white-space:pre-wrap\">"
        f"{html.escape(printable(a['comment']))}</td></tr>" for a in answers)
    lines = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                    for label, value in summary)
    table = (f"<table><tr><th>written answer</th><th>points</th><th>comment</th></tr>{rows}"
             "</table>\n") if answers else "<p>No written answer was graded.</p>\n"
    return (f'<div class="test"><h2>Written answers (graded by hand)</h2>\n{table}'
            f"<h2>Assignment total</h2>\n<table>{lines}</table></div>")


def with_manual_part(page: str, part: str) -> str:
    """``page`` (from ``render`` or ``status_page``) with ``part`` in its slot (after the title in
    a page written before the slot existed)."""
    if MANUAL_SLOT in page:
        return page.replace(MANUAL_SLOT, part, 1)
    head, _, rest = page.partition("</h1>")
    return f"{head}</h1>\n{part}{rest}" if rest else page + part
