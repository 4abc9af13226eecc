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


def _installer():
    import importlib.util
    spec = importlib.util.spec_from_file_location("install", ROOT / "requirements" / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_installer_passes_pips_package_sources_on_to_uv_once_each():
    config = "\n".join([
        "global.find-links='/opt/wheels'",
        ":env:.find-links='/opt/wheels'",                       # the same source in two scopes
        "global.extra-index-url='file:///a/simple file:///b/simple'",
        "global.constraint='/etc/pip/constraints.txt'",
        "global.cert='/etc/ssl/cert.pem'",                      # not a package source: dropped
        "global.index-url='https://mirror.example/simple'"])
    assert _installer().uv_source_options(config) == [
        "--find-links", "/opt/wheels", "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple", "--constraint", "/etc/pip/constraints.txt",
        "--index-url", "https://mirror.example/simple"]


def test_the_installer_falls_back_to_pip_when_uv_fails(monkeypatch, tmp_path, capsys):
    install, calls = _installer(), []

    def run(argv):                      # installing uv works, uv itself fails, pip works
        calls.append(argv)
        return not argv[0].endswith("uv")

    monkeypatch.setattr(install, "_run", run)
    monkeypatch.setattr(install, "_pip_config", lambda python: "global.find-links='/w'")
    python = str(tmp_path / "bin" / "python")
    assert install.install(python, "lock.txt") == 0
    assert calls[0] == [python, "-m", "pip", "install", "-qq", "uv"]
    assert calls[1][:2] == [str(tmp_path / "bin" / "uv"), "pip"]
    assert calls[1][-4:] == ["--find-links", "/w", "-r", "lock.txt"]
    assert calls[2] == [python, "-m", "pip", "install", "-qq", "--no-compile", "-r", "lock.txt"]
    assert "pip installs them instead" in capsys.readouterr().out
