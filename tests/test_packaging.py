"""The set-up files agree with each other: lock, environment.yml, pyproject, Makefile, CI."""
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_equals_lock():
    lock = pins((ROOT / "requirements/lock.txt").read_text().splitlines())
    env = pins((ROOT / "environment.yml").read_text().splitlines())
    assert env == lock, {k: (lock.get(k), env.get(k)) for k in set(lock) | set(env) if lock.get(k) != env.get(k)}


def test_lock_pins_the_torch_on_this_disk_and_every_dependency():
    lock = pins((ROOT / "requirements/lock.txt").read_text().splitlines())
    assert lock["torch"] == "2.14.1" and lock["torchvision"] == "0.29.1"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for req in wanted:
        name = re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")
        assert name in lock, f"{name} is a dependency but not pinned in requirements/lock.txt"


def test_package_does_not_pin_torch_numpy_or_ipywidgets_exactly():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        if re.match(r"(torch|torchvision|numpy|ipywidgets)\b", dep):
            assert "==" not in dep, f"{dep}: Colab must keep its preinstalled build"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test$", (ROOT / ".ci/run").read_text(), re.M)


def test_installed_version_matches_lock():
    import torch
    lock = pins((ROOT / "requirements/lock.txt").read_text().splitlines())
    assert torch.__version__.split("+")[0] == lock["torch"]
    assert sys.version_info[:2] >= (3, 10)

