"""Where the course lives: ``[tool.course]`` of pyproject.toml, and the links that carry it.

Students reach the course through two kinds of link, found in ``lectures/*.ipynb``,
``exercises/*/*.ipynb`` and ``README.md``:

- the "Open in Colab" badge and any other Colab link to a notebook of the course,
  ``https://colab.research.google.com/github/OWNER/NAME/blob/TAG/PATH.ipynb``;
- the Colab install, ``%pip install "course_lib @ git+https://github.com/OWNER/NAME@TAG"``, pinned
  to the tag so that a student gets the ``course_lib`` the grader runs. The course installs nothing
  else from GitHub, so every ``git+https://github.com/...`` URL is taken to be one.

``stamp_text`` rewrites both to the setting (the path of a Colab link is kept, except a notebook's
own badge, which opens the notebook itself); ``stamp_course`` does it to the files in place,
writing a file only when a link in it changes; ``stale_links`` lists what points elsewhere.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

# The repository shipped in pyproject.toml: nobody publishes there, so its badges open nothing.
PLACEHOLDER_REPOSITORY = "ssl-vision-course/ssl-vision-course"
# The checkout this package runs from: its pyproject.toml serves a root that has none (a scratch
# folder holding only solutions/, as the tests build).
CHECKOUT = Path(__file__).resolve().parents[1]

REPOSITORY_FORMAT = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
TAG_FORMAT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")     # one git ref component, no '/'

COLAB_GITHUB = re.compile(r"https://colab\.research\.google\.com/github/"
                          r"(?P<repository>[\w.-]+/[\w.-]+)/blob/(?P<ref>[^/\s]+)/"
                          r"(?P<path>[^\s)\"'<>]+?\.ipynb)")
GIT_INSTALL = re.compile(r"git\+https://github\.com/(?P<repository>[\w.-]+/[\w.-]+?)(?:\.git)?"
                         r"(?:@(?P<ref>[\w.+-]+))?(?=[^\w.+@/-]|$)")
# What precedes the link of an "Open in Colab" badge: `[![Open In Colab](...colab-badge.svg)](`.
BADGE_LINK_PREFIX = "colab-badge.svg)]("


class SettingError(ValueError):
    """pyproject.toml has no readable, well-formed ``[tool.course]``."""


@dataclass(frozen=True)
class CourseSetting:
    """The public GitHub repository (``owner/name``) and the git tag students install and open."""

    repository: str
    tag: str

    @property
    def is_placeholder(self) -> bool:
        return self.repository == PLACEHOLDER_REPOSITORY

    def colab_url(self, path: str) -> str:
        """Where Colab opens the repository's ``path`` (a notebook) at the tag."""
        return f"https://colab.research.google.com/github/{self.repository}/blob/{self.tag}/{path}"

    @property
    def install_url(self) -> str:
        return f"git+https://github.com/{self.repository}@{self.tag}"


def load_setting(root: Path) -> CourseSetting:
    """``[tool.course]`` of ``root/pyproject.toml`` (of this checkout's where ``root`` has none)."""
    path = root / "pyproject.toml"
    if not path.is_file():
        path = CHECKOUT / "pyproject.toml"
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("course")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SettingError(f"cannot read {path}: {error}") from None
    if not isinstance(table, dict):
        raise SettingError(f'{path} has no [tool.course] table (repository = "owner/name", '
                           f'tag = "v0.1.0")')
    repository, tag = table.get("repository"), table.get("tag")
    if not isinstance(repository, str) or not REPOSITORY_FORMAT.fullmatch(repository):
        raise SettingError(f"[tool.course] repository in {path} must be a GitHub repository "
                           f'"owner/name", got {repository!r}')
    if not isinstance(tag, str) or not TAG_FORMAT.fullmatch(tag):
        raise SettingError(f"[tool.course] tag in {path} must be a git tag such as \"v0.1.0\" "
                           f"(letters, digits, '.', '_', '+', '-'), got {tag!r}")
    return CourseSetting(repository, tag)


# --- text -----------------------------------------------------------------------------------------

def _colab_target(text: str, match: re.Match, setting: CourseSetting, own_path: str | None) -> str:
    """What a Colab link of ``text`` becomes: the same path (or ``own_path`` for a badge), at
    the setting's repository and tag."""
    before = text[max(0, match.start() - len(BADGE_LINK_PREFIX)):match.start()]
    is_badge = before == BADGE_LINK_PREFIX
    return setting.colab_url(own_path if own_path and is_badge else match["path"])


def stamp_text(text: str, setting: CourseSetting, own_path: str | None = None) -> str:
    """``text`` with every Colab link and GitHub install pointing at the setting; with
    ``own_path``, the link of an "Open in Colab" badge opens that path."""
    text = COLAB_GITHUB.sub(lambda m: _colab_target(text, m, setting, own_path), text)
    return GIT_INSTALL.sub(lambda m: setting.install_url, text)


def stale_links(text: str, setting: CourseSetting, own_path: str | None = None) -> list[str]:
    """The links of ``text`` that ``stamp_text`` would change, in order of kind then place."""
    stale = [m[0] for m in COLAB_GITHUB.finditer(text)
             if _colab_target(text, m, setting, own_path) != m[0]]
    return stale + [m[0] for m in GIT_INSTALL.finditer(text) if m[0] != setting.install_url]


# --- files ----------------------------------------------------------------------------------------

def stamped_notebook(raw: bytes, own_path: str, setting: CourseSetting) -> tuple[bytes, list[str]]:
    """The notebook file ``raw`` stamped, and its stale links; ``raw`` itself when none is stale.

    Only cell sources change (outputs are what ran, not links to follow), and the file is written
    back the way the course's notebooks are saved (indent 1, keys in their order, UTF-8, final
    newline), so a notebook with nothing stale keeps every byte. The first cell's badge opens
    ``own_path``, the notebook itself.
    """
    nb = json.loads(raw)
    stale: list[str] = []
    for index, cell in enumerate(nb.get("cells", [])):
        own = own_path if index == 0 else None
        source = cell.get("source", "")
        lines = [source] if isinstance(source, str) else source
        for line in lines:
            stale += stale_links(line, setting, own)
        stamped = [stamp_text(line, setting, own) for line in lines]
        if stamped != lines:
            cell["source"] = stamped[0] if isinstance(source, str) else stamped
    if not stale:
        return raw, []
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8"), stale


def student_files(root: Path) -> list[Path]:
    """The files whose links students follow: the lectures, the released exercises, the README."""
    files = (sorted((root / "lectures").glob("*.ipynb"))
             + sorted((root / "exercises").glob("*/*.ipynb")))
    readme = root / "README.md"
    return [p for p in files if not p.name.startswith(".")] + ([readme] if readme.is_file() else [])


def _stamped_file(path: Path, root: Path, setting: CourseSetting) -> tuple[bytes, list[str]]:
    raw = path.read_bytes()
    rel = path.relative_to(root).as_posix()
    if path.suffix == ".ipynb":
        return stamped_notebook(raw, rel, setting)
    text = raw.decode("utf-8")
    stale = stale_links(text, setting)
    return (stamp_text(text, setting).encode("utf-8") if stale else raw), stale


def stamp_course(root: Path, setting: CourseSetting) -> list[str]:
    """Stamp the setting into ``student_files(root)``; the relative paths of the files changed."""
    changed = []
    for path in student_files(root):
        stamped, stale = _stamped_file(path, root, setting)
        if stale:
            path.write_bytes(stamped)
            changed.append(path.relative_to(root).as_posix())
    return changed


def link_problems(root: Path, setting: CourseSetting) -> list[str]:
    """One line per file of ``student_files(root)`` with a link that points elsewhere."""
    problems = []
    for path in student_files(root):
        try:
            _, stale = _stamped_file(path, root, setting)
        except ValueError as error:   # not JSON, not UTF-8: both are ValueErrors
            problems.append(f"{path.relative_to(root).as_posix()} cannot be read: {error}")
            continue
        if stale:
            shown = ", ".join(sorted(set(stale))[:3]) + (", ..." if len(set(stale)) > 3 else "")
            problems.append(f"{path.relative_to(root).as_posix()} points elsewhere than "
                            f"{setting.repository} at tag {setting.tag}: {shown}")
    return problems
