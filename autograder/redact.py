"""What a person reads is cleaned here: no hidden test or solution line, no spreadsheet formula.

Everything a submission produces is attacker-controlled (see ``journal.py``). Before any of it
reaches a feedback page, a verdict message, ``grades.csv``, ``cells.csv`` or the grader's log:

- ``Redactor`` finds lines of the hidden tests and solutions in it even when they were disguised
  (Unicode compatibility forms, accents, zero-width and other invisible characters, changed
  spacing or line breaks): text and secrets are compared as *skeletons*, NFKD-normalised (NFKC's
  compatibility folding) with every whitespace, control, format and combining character removed.
- ``csv_cell`` makes a value safe for a spreadsheet: any file name (bytes that are not UTF-8 are
  written as ``\\xNN`` escapes, never a crash), no line breaks, and a cell that would start with
  ``= + - @`` (a formula in Excel, LibreOffice and Google Sheets) is prefixed with ``'``.
"""
from __future__ import annotations

import unicodedata
from typing import Iterable

REMOVED = "[removed: it contained lines of the grader's hidden tests or solutions]"
_DROPPED_CATEGORIES = ("C", "Z", "Mn", "Me")     # control/format/unassigned, spaces, combining
MIN_SKELETON = 10                                # shorter secrets would match ordinary text
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def printable(text: object) -> str:
    """``text`` as a str that can always be encoded as UTF-8 (lone surrogates from undecodable
    file names become ``\\xNN`` escapes)."""
    value = str(text)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape") if _only_escapes(value) else \
            value.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


def _only_escapes(value: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in value)


def skeleton(text: str) -> str:
    """Compatibility form of ``text`` (NFKD: NFKC's folding, with accents split off as combining
    marks) without whitespace, control, format or combining characters."""
    normal = unicodedata.normalize("NFKD", printable(text))
    return "".join(c for c in normal if not unicodedata.category(c).startswith(_DROPPED_CATEGORIES))


class Redactor:
    """Finds the given secret lines in any text, however disguised (see the module docstring)."""

    def __init__(self, secret_lines: Iterable[str]) -> None:
        keys = {skeleton(line) for line in secret_lines}
        self.keys = sorted(k for k in keys if len(k) >= MIN_SKELETON)

    def leaks(self, text: str) -> bool:
        shape = skeleton(text)
        return any(key in shape for key in self.keys)

    def clean(self, text: str, notice: str = REMOVED) -> str:
        """``text`` made printable, or ``notice`` when it holds a secret line."""
        return notice if self.leaks(text) else printable(text)


def csv_cell(value: object) -> str:
    """A value for grades.csv / cells.csv: printable, one line, never a formula."""
    text = "".join(c if unicodedata.category(c) != "Cc" else " "
                   for c in printable(value if value is not None else ""))
    text = " ".join(text.split())
    return "'" + text if text.startswith(FORMULA_START) else text
