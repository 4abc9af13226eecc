"""Finding and reading submissions (autograder/submissions.py) and cleaning what people read
(autograder/redact.py): links and special files refused, any file name, disguised secrets found,
spreadsheet formulas neutralised. Fast: no notebook runs."""
from __future__ import annotations

import csv
import io
import os
import time

import nbformat
import pytest

from autograder import journal
from autograder.redact import REMOVED, Redactor, csv_cell, printable, skeleton
from autograder.submissions import find_jobs, match_notebooks, read_submission

NOTEBOOK = nbformat.writes(nbformat.v4.new_notebook()).encode()


def test_links_and_special_files_are_refused_and_never_opened(tmp_path):
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(NOTEBOOK)
    subs = tmp_path / "subs"
    (subs / "linked_file").mkdir(parents=True)
    (subs / "linked_file" / "infonce.ipynb").symlink_to(secret)
    (subs / "fifo").mkdir()
    os.mkfifo(subs / "fifo" / "infonce.ipynb")     # opening it for reading would block forever
    (subs / "linked_folder").symlink_to(subs / "linked_file", target_is_directory=True)
    (subs / "both").mkdir()
    (subs / "both" / "link.ipynb").symlink_to(secret)
    (subs / "both" / "mine.ipynb").write_bytes(NOTEBOOK)
    jobs = {job.student_id: job for job in find_jobs(subs, ["infonce"])}
    assert jobs["linked_file"].files == {} and "symbolic link" in jobs["linked_file"].refused
    assert jobs["fifo"].files == {} and "special file" in jobs["fifo"].refused
    assert jobs["linked_folder"].files == {} and "folder is a symbolic link" in \
        jobs["linked_folder"].refused
    assert jobs["both"].files == {"infonce": str(subs / "both" / "mine.ipynb")}
    assert any("refused 'link.ipynb'" in note for note in jobs["both"].notes)
    with pytest.raises(OSError):
        read_submission(subs / "linked_file" / "infonce.ipynb")
    start = time.monotonic()
    with pytest.raises(ValueError, match="not a regular file"):
        read_submission(subs / "fifo" / "infonce.ipynb")
    assert time.monotonic() - start < 1


def test_any_file_name_is_matched_and_printed_escaped(tmp_path):
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    (folder / os.fsdecode(b"Copy of infonce \xe9.ipynb")).write_bytes(NOTEBOOK)
    matched, notes = match_notebooks(folder, ["infonce"])
    assert list(matched) == ["infonce"]
    assert printable(folder.name) == "caf\\xe9"
    assert notes == ["graded 'Copy of infonce \\xe9.ipynb' as infonce.ipynb"]
    assert csv_cell(folder.name) == "caf\\xe9"


def test_csv_cells_are_one_line_and_never_a_formula():
    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    for start in "+-@":
        assert csv_cell(start + "1+1").startswith("'")
    assert csv_cell("a\nb\r\x00c") == "a b c"
    assert csv_cell("  =1") == "'=1"                     # leading spaces do not hide it
    assert csv_cell("ok") == "ok" and csv_cell(3) == "3"
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(os.fsdecode(b"\xff\xfe"))])
    assert buffer.getvalue().strip() == "\\xff\\xfe"


def test_secret_lines_are_found_however_they_are_disguised():
    line = "check_close(name, uniformity(z, t), _uniformity_loop(z, t), atol=1e-4,"
    redactor = Redactor([line, "short"])
    disguises = [line, "\u200b".join(line), line.replace(" ", "\u00a0\u00a0"),
                 line.replace("(", "\uff08"),                        # fullwidth: NFKC undoes it
                 "\u2060".join(line[:30]) + "\n" + line[30:],          # split over two lines
                 "".join(c + "\u0301" for c in line),                  # combining accents
                 "prefix " + line.replace(",", ",\t") + " suffix"]
    for text in disguises:
        assert redactor.leaks(text), repr(text[:40])
        assert redactor.clean(text) == REMOVED
    assert not redactor.leaks("check_close(name, my_answer, 1.0)")
    assert not redactor.leaks("short")       # too short to be told from ordinary text
    assert skeleton("a \u200bb\tc") == "abc"


def test_journal_lines_are_parsed_under_limits():
    huge = '{"cell": "t", "kind": "close", "name": "x", "got": {"shape": [%s], "values": []}}' % (
        ", ".join([str(10 ** 3999 + 7)] * 900))
    deep = '{"cell": "t", "got": ' + "[" * 100000 + "]" * 100000 + "}"
    start = time.monotonic()
    cells = journal.read_journal("\n".join([huge] * 3 + [deep, "x" * (journal.MAX_LINE_CHARS + 1)]))
    values = [journal._values(entry["got"]) for entry in cells["t"]]
    assert time.monotonic() - start < 5
    assert values == [None, None, None]
    assert journal._values({"shape": [2 ** 40, 0], "values": []}) is None
    assert journal._values({"shape": [2, 2], "values": [1, 2, 3, 10 ** 400]}) is None
    assert journal._values({"shape": [2], "values": [1, 2.5]}) == ((2,), [1.0, 2.5])
