"""pytest set-up for the whole repository (lectures and tests): the ``--run-first`` option.

``make test`` runs one pytest session on two workers that take whole test modules in the order
the session collected them. pytest collects files in its own order (a folder's files
alphabetically, whatever order the command line named them in), so a long module collected last
(``tests/test_zoo.py``, three minutes) ran alone on one worker while the other sat idle.
``--run-first PATH`` moves the tests under PATH ahead of the rest, in the order the options are
given; everything else keeps its collected order.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-first", action="append", default=[], metavar="PATH",
                     help="run the tests in PATH (a file or folder, relative to the repository) "
                          "before all others, in the order the options are given")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    first = []
    for name in config.getoption("run_first"):
        path = (config.rootpath / name).resolve()
        if not path.exists():
            raise pytest.UsageError(f"--run-first {name}: no such file or folder under {config.rootpath}")
        first.append(path)
    if not first:
        return

    def rank(item: pytest.Item) -> int:
        here = Path(item.path).resolve()
        return next((i for i, path in enumerate(first) if here == path or path in here.parents),
                    len(first))
    items.sort(key=rank)      # stable: within one rank the collected order stays
