"""Install a requirements file into a virtual environment, fast, with pip as the fallback.

    python requirements/install.py VENV_PYTHON REQUIREMENTS

uv installs the pinned lock in about 20 s where pip takes about 70 s (2 cores; the bootstrap of
`make test` and `make lab`). uv does not read pip's configuration, so the package sources pip is
set up with (``pip config list``: index-url, extra-index-url, find-links, constraint) are passed
on as uv's own options. If uv cannot be installed or fails for any reason, the same requirements
are installed by pip, which reads that configuration itself: the result is the same pinned set.
Neither compiles bytecode (the Makefile runs compileall on every core afterwards).
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

# pip's option -> uv's; values that hold several entries are space-separated in pip's config
PIP_TO_UV = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
             "find-links": "--find-links", "constraint": "--constraint"}


def uv_source_options(pip_config: str) -> list[str]:
    """uv options for the package sources in ``pip config list`` output (``scope.key='value'``).

    >>> uv_source_options("global.find-links='/opt/wheels'\\n:env:.extra-index-url='a b'")
    ['--find-links', '/opt/wheels', '--extra-index-url', 'a', '--extra-index-url', 'b']
    """
    pairs: list[tuple[str, str]] = []
    for line in pip_config.splitlines():
        name, sep, value = line.partition("=")
        key = name.rsplit(".", 1)[-1]
        if not sep or key not in PIP_TO_UV:
            continue
        for entry in shlex.split(value):
            for item in entry.split():
                if (PIP_TO_UV[key], item) not in pairs:     # set in two scopes: pass it once
                    pairs.append((PIP_TO_UV[key], item))
    return [part for pair in pairs for part in pair]


def _run(argv: list[str]) -> bool:
    return subprocess.run(argv).returncode == 0


def _pip_config(python: str) -> str:
    return subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                          text=True).stdout


def install(python: str, requirements: str) -> int:
    pip = [python, "-m", "pip"]
    uv = Path(python).with_name("uv")
    if (uv.exists() or _run(pip + ["install", "-qq", "uv"])) and _run(
            [str(uv), "pip", "install", "--quiet", "--python", python,
             "--index-strategy", "unsafe-best-match", *uv_source_options(_pip_config(python)),
             "-r", requirements]):
        return 0
    print("install: uv did not install the requirements; pip installs them instead", flush=True)
    return 0 if _run(pip + ["install", "-qq", "--no-compile", "-r", requirements]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python requirements/install.py")
    parser.add_argument("python", help="the virtual environment's python")
    parser.add_argument("requirements", help="a pinned requirements file")
    args = parser.parse_args(argv)
    return install(args.python, args.requirements)


if __name__ == "__main__":
    sys.exit(main())
