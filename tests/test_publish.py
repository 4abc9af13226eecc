"""Where the course lives (``[tool.course]`` in pyproject.toml): ``release`` stamps it into every
badge and Colab install of the lectures, exercises and README, ``check`` fails on a link that
points elsewhere, ``publish`` writes the student tree and leaves out what grades them.

Everything runs on copies in temporary folders, without nbgrader (no ``solutions/`` where
``release`` runs) and without executing a notebook.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from autograder.links import (COLAB_GITHUB, GIT_INSTALL, PLACEHOLDER_REPOSITORY, CourseSetting,
                              link_problems, load_setting, stamp_course, stamp_text)
from autograder.notebooks import MARKERS, read_notebook, rewrite_for_release

REPO = Path(__file__).resolve().parents[1]
SETTING = CourseSetting("example-org/ssl-course", "v2.1.0")
COLAB_PREFIX = "https://colab.research.google.com/github/example-org/ssl-course/blob/v2.1.0/"
INSTALL = "git+https://github.com/example-org/ssl-course@v2.1.0"


def autograder(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    return subprocess.run([sys.executable, "-m", "autograder", "--root", str(root), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def write_setting(root: Path, repository: str, tag: str) -> None:
    """The repository's pyproject.toml with ``[tool.course]`` set to these values."""
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r'(?m)^repository = ".*"$', f'repository = "{repository}"', text)
    text = re.sub(r'(?m)^tag = ".*"$', f'tag = "{tag}"', text)
    (root / "pyproject.toml").write_text(text)
    assert load_setting(root) == CourseSetting(repository, tag)


def student_copy(root: Path) -> Path:
    """The lectures, the released exercises and the README, with a real-looking setting."""
    shutil.copytree(REPO / "lectures", root / "lectures")
    shutil.copytree(REPO / "exercises", root / "exercises")
    shutil.copy(REPO / "README.md", root / "README.md")
    write_setting(root, SETTING.repository, SETTING.tag)
    return root


def links(path: Path) -> tuple[list[str], list[str]]:
    """Every Colab link and every GitHub install in the file (cell sources of a notebook)."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text())
        text = "\n".join("".join(c["source"]) for c in nb["cells"])
    else:
        text = path.read_text()
    return ([m[0] for m in COLAB_GITHUB.finditer(text)],
            [m[0] for m in GIT_INSTALL.finditer(text)])


def student_files(root: Path) -> list[Path]:
    return (sorted(root.glob("lectures/*.ipynb")) + sorted(root.glob("exercises/*/*.ipynb"))
            + [root / "README.md"])


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- stamping -------------------------------------------------------------------------------------

def test_the_shipped_setting_is_the_placeholder_in_pyproject():
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["course"]
    assert table["repository"] == PLACEHOLDER_REPOSITORY
    assert load_setting(REPO).is_placeholder and re.fullmatch(r"v\d+\.\d+\.\d+", table["tag"])


def test_stamp_pins_installs_keeps_link_paths_and_opens_the_badge_on_itself():
    text = ('[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]'
            '(https://colab.research.google.com/github/a/b/blob/main/solutions/x/y.ipynb) see '
            '[unit 2](https://colab.research.google.com/github/a/b/blob/main/'
            'exercises/02_dino/dino.ipynb)\n'
            '%pip install -q "course_lib @ git+https://github.com/a/b.git@main#egg=course_lib"\n'
            "pip install git+https://github.com/a/b\n")
    stamped = stamp_text(text, SETTING, own_path="lectures/01_infonce.ipynb")
    assert f"]({COLAB_PREFIX}lectures/01_infonce.ipynb)" in stamped          # the badge: itself
    assert f"({COLAB_PREFIX}exercises/02_dino/dino.ipynb)" in stamped        # another: same path
    assert f'"course_lib @ {INSTALL}#egg=course_lib"' in stamped
    assert f"pip install {INSTALL}\n" in stamped
    assert "/a/b" not in stamped and "main" not in stamped
    assert stamp_text(stamped, SETTING, own_path="lectures/01_infonce.ipynb") == stamped


def test_release_stamps_every_badge_and_install_pinned_and_a_second_release_changes_nothing(
        tmp_path):
    root = student_copy(tmp_path)
    before = snapshot(root)
    assert len(link_problems(root, SETTING)) == len(student_files(root))   # all point elsewhere
    run = autograder("release", root=root)
    assert run.returncode == 0, run.stdout + run.stderr
    for path in student_files(root):
        rel = path.relative_to(root).as_posix()
        colab, installs = links(path)
        old_colab, old_installs = links(REPO / rel)
        assert len(colab) == len(old_colab) and len(installs) == len(old_installs) >= 1, rel
        assert all(url.startswith(COLAB_PREFIX) for url in colab), (rel, colab)
        assert installs == [INSTALL] * len(installs), (rel, installs)
        if path.suffix == ".ipynb":
            first = "".join(json.loads(path.read_text())["cells"][0]["source"])
            assert f"colab-badge.svg)]({COLAB_PREFIX}{rel})" in first, rel
        # only lines holding a link changed, and the notebook is otherwise byte for byte the same
        old_lines, new_lines = before[rel].decode().splitlines(), path.read_text().splitlines()
        assert len(old_lines) == len(new_lines), rel
        changed = [new for old, new in zip(old_lines, new_lines) if old != new]
        assert changed and all(COLAB_PREFIX in line or INSTALL in line for line in changed), rel
    assert link_problems(root, SETTING) == []
    stamped = snapshot(root)
    again = autograder("release", root=root)
    assert again.returncode == 0 and "now points at" not in again.stdout, again.stdout
    assert snapshot(root) == stamped


def test_the_release_of_an_exercise_opens_and_installs_the_setting():
    nb = rewrite_for_release(read_notebook(REPO / "tests/fixtures/toy_assignment/toy.ipynb"),
                             "toy_assignment", "toy", SETTING)
    assert f"]({COLAB_PREFIX}exercises/toy_assignment/toy.ipynb)" in nb.cells[0].source
    assert f'"course_lib @ {INSTALL}"' in nb.cells[1].source


# --- check ----------------------------------------------------------------------------------------

def test_check_fails_naming_a_lecture_whose_badge_or_install_points_elsewhere(tmp_path):
    root = tmp_path
    shutil.copytree(REPO / "lectures", root / "lectures")
    write_setting(root, SETTING.repository, SETTING.tag)
    stamp_course(root, SETTING)
    clean = autograder("check", root=root)
    assert clean.returncode == 0, clean.stdout

    lecture = root / "lectures" / "02_dino.ipynb"
    nb = json.loads(lecture.read_text())
    nb["cells"][0]["source"] = [line.replace("/blob/v2.1.0/", "/blob/main/")
                                for line in nb["cells"][0]["source"]]
    lecture.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    stale = autograder("check", root=root)
    assert stale.returncode == 1
    assert re.search(r"lectures/02_dino\.ipynb points elsewhere than example-org/ssl-course at "
                     r"tag v2\.1\.0: \S+/blob/main/lectures/02_dino\.ipynb",
                     stale.stdout), stale.stdout
    assert "01_infonce" not in stale.stdout

    write_setting(root, SETTING.repository, "v2.2.0")     # a new tag: every file is stale
    retagged = autograder("check", root=root)
    assert retagged.returncode == 1
    assert all(f"lectures/{p.name} points elsewhere" in retagged.stdout
               for p in (root / "lectures").glob("*.ipynb"))


# --- publish --------------------------------------------------------------------------------------

def git_checkout(root: Path, files: list[str]) -> Path:
    """A git checkout at ``root`` holding these files of this repository, tracked."""
    if shutil.which("git") is None:
        pytest.skip("publish lists the tracked files with git, which is not installed")
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    write_setting(root, SETTING.repository, SETTING.tag)
    stamp_course(root, SETTING)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """Every file this repository tracks, in a git checkout with a real-looking setting."""
    if shutil.which("git") is None:
        pytest.skip("publish lists the tracked files with git, which is not installed")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                            check=True).stdout.decode().split("\0")
    files = [rel for rel in listed if rel and (REPO / rel).is_file()]
    return git_checkout(tmp_path_factory.mktemp("course"), files)


def small_course(root: Path) -> Path:
    """A few files of each kind: enough for publish, quick to copy and add."""
    exercises = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("exercises/*/*.ipynb"))
    return git_checkout(root, ["README.md", "Makefile", "course_lib/__init__.py",
                               "lectures/01_infonce.ipynb", exercises[0], "tests/test_ema.py",
                               "tests/test_autograder.py", "autograder/__init__.py",
                               "solutions/" + exercises[0].split("/", 1)[1]])


def test_publish_refuses_while_the_repository_is_the_placeholder(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    write_setting(root, PLACEHOLDER_REPOSITORY, SETTING.tag)
    run = autograder("publish", str(tmp_path / "public"), root=root)
    assert run.returncode == 2
    assert "[tool.course] repository" in run.stdout and "pyproject.toml" in run.stdout
    assert PLACEHOLDER_REPOSITORY in run.stdout
    assert not (tmp_path / "public").exists()


def test_publish_writes_the_student_tree_without_solutions_hidden_tests_or_grader(course,
                                                                                    tmp_path):
    root, out = course, tmp_path / "public"
    run = autograder("publish", str(out), root=root)
    assert run.returncode == 0, run.stdout + run.stderr
    published = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    lectures = {p.relative_to(root).as_posix() for p in root.glob("lectures/*.ipynb")}
    exercises = {p.relative_to(root).as_posix() for p in root.glob("exercises/*/*.ipynb")}
    assert lectures and exercises and lectures | exercises <= published
    assert {"course_lib/__init__.py", "pyproject.toml", "README.md", "Makefile",
            "requirements/lock.txt", "tests/test_simclr.py"} <= published
    assert not any(rel.split("/")[0] in ("solutions", "autograder") for rel in published)
    assert not {"tests/test_autograder.py", "tests/attacks.py", "tests/notebook_harness.py",
                "tests/test_publish.py"} & published
    assert not any(rel.startswith("tests/fixtures/") for rel in published)
    for rel in published:
        data = (out / rel).read_bytes()
        assert not any(marker.encode() in data for marker in MARKERS), rel
        assert b"### BEGIN SOLUTION" not in data and b"BEGIN HIDDEN TESTS" not in data, rel
        if rel.endswith(".py"):
            assert not re.search(rb"^\s*(from|import)\s+autograder\b", data, re.M), rel
    for rel in published - {"README.md", "Makefile"}:
        assert (out / rel).read_bytes() == (root / rel).read_bytes(), rel
    readme = (out / "README.md").read_text()
    assert "## For students" in readme and "## For instructors" not in readme
    assert "## Publishing the course" not in readme
    assert "-m autograder" not in (out / "Makefile").read_text()
    dry = subprocess.run(["make", "-n", "-C", str(out), "test"], capture_output=True, text=True)
    named = set(re.findall(r"tests/[\w/]+\.py", dry.stdout))     # what `make test` would run
    assert named and all((out / rel).is_file() for rel in named), sorted(named)
    assert link_problems(out, SETTING) == []
    assert "solutions/01_infonce/infonce.ipynb" in run.stdout      # the summary says what stayed


def test_publish_leaves_out_a_new_test_of_the_grader_and_removes_a_tree_with_a_marker(tmp_path):
    root = small_course(tmp_path / "course")
    (root / "tests" / "test_new_grading_step.py").write_text(
        "from autograder.notebooks import MARKERS\n\n\ndef test_it():\n    assert MARKERS\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    run = autograder("publish", str(tmp_path / "public"), root=root)
    assert run.returncode == 0, run.stdout
    written = {p.relative_to(tmp_path / "public").as_posix()
               for p in (tmp_path / "public").rglob("*") if p.is_file()}
    assert "tests/test_ema.py" in written and "lectures/01_infonce.ipynb" in written
    assert not {"tests/test_new_grading_step.py", "tests/test_autograder.py"} & written
    assert not any(rel.startswith(("solutions/", "autograder/")) for rel in written)

    notes = root / "lectures" / "notes.md"
    notes.write_text("A draft answer:\n\n    ### BEGIN SOLUTION\n    return 42\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    leaked = autograder("publish", str(tmp_path / "public2"), root=root)
    assert leaked.returncode == 1
    assert "lectures/notes.md contains 'BEGIN SOLUTION'" in leaked.stdout
    assert not (tmp_path / "public2").exists()

    (tmp_path / "public3").mkdir()
    (tmp_path / "public3" / "old.txt").write_text("x")
    occupied = autograder("publish", str(tmp_path / "public3"), root=root)
    assert occupied.returncode == 2 and "is not empty" in occupied.stdout
