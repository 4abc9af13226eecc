"""The lectures' cell sources as tests read them to check a quoted figure against its record."""
from __future__ import annotations

import json
from pathlib import Path

LECTURES = Path(__file__).resolve().parents[1] / "lectures"


def lecture_texts(name: str) -> list[str]:
    """Each cell's source of lectures/``name``, whitespace collapsed to single spaces (so a quote
    matches however the Markdown wraps it)."""
    lecture = json.loads((LECTURES / name).read_text())
    return [" ".join("".join(cell["source"]).split()) for cell in lecture["cells"]]
