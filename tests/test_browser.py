"""The lecture widgets work in a real browser: JupyterLab 4 in headless Chromium opens
``lectures/02_dino.ipynb``, runs it down to the teacher-target widget cell, moves the ``tau_t``
slider with the keyboard and checks that the kernel redrew the figure.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps``, which ``make test``
runs first); without them the test is skipped. Screenshots go to ``artifacts/browser/``;
``UPDATE_SCREENSHOT=1`` also copies the one taken after the move to ``benchmarks/browser_widget.png``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURE = "lectures/02_dino.ipynb"
WIDGET_CELL_MARK = "widgets.interact(show_teacher"   # the cell whose sliders the test moves
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "artifacts" / "browser"
REFERENCE_SCREENSHOT = ROOT / "benchmarks" / "browser_widget.png"
SERVER_START_S = 60
WAIT_S = 60
# Opening the lecture waits longer: JupyterLab renders the saved notebook and starts a kernel while
# the other pytest worker may be running a lecture on the second core (one CI run took over 60 s).
OPEN_WAIT_S = 180
# Without the background-networking flags Chromium keeps dialling Google's services, which a
# closed network refuses; the user-data-dir is added per run so no profile is shared.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")

pytest.importorskip("selenium", reason="selenium is in the dev extra, pinned in the lock: make bootstrap")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

_missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"{' and '.join(_missing)} missing: run `make browser-deps` (Linux, apt-get install "
           f"chromium chromium-driver as root) to run the browser test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _widget_cell_index(notebook) -> int:
    found = [i for i, cell in enumerate(notebook.cells) if WIDGET_CELL_MARK in cell.source]
    assert len(found) == 1, f"{LECTURE}: expected one cell calling {WIDGET_CELL_MARK}, found {found}"
    return found[0]


def _copy_lecture_without_outputs(root_dir: Path) -> int:
    """The lecture as committed, minus its outputs and saved widget state: any figure the test
    then sees was drawn by this run's kernel, not restored from the file."""
    notebook = nbformat.read(ROOT / LECTURE, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("widgets", None)
    (root_dir / LECTURE).parent.mkdir(parents=True)
    nbformat.write(notebook, root_dir / LECTURE)
    return _widget_cell_index(notebook)


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, its own config and settings, the venv's python3 kernel."""
    tmp = tmp_path_factory.mktemp("lab")
    root_dir = tmp / "root"
    widget_cell = _copy_lecture_without_outputs(root_dir)
    # "Never" answers the news question JupyterLab would otherwise pin over the figure.
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token, port = secrets.token_hex(16), _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
               "--ServerApp.ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--MappingKernelManager.default_kernel_name=python3",
               # window.jupyterapp lets the test run JupyterLab's own commands; the rest keeps
               # the page from reaching for the network or for the user's settings.
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly",
               f"--LabApp.user_settings_dir={tmp / 'settings'}",
               f"--LabApp.workspaces_dir={tmp / 'workspaces'}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen(command, cwd=root_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}:\n"
                            f"{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within {SERVER_START_S} s:\n"
                                f"{(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.2)   # nothing to wait on but the port itself
        yield {"url": f"{base}/lab/tree/{LECTURE}?token={token}", "widget_cell": widget_cell}
    finally:
        try:   # its kernels first (they run in their own sessions), then the server
            for kernel in _api(base, token, "/api/kernels"):
                _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
            _api(base, token, "/api/shutdown", method="POST")
            server.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # Both paths are given, so Selenium Manager has nothing to look up; offline, it never tries.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


# JavaScript run in the page. The notebook panel is found by its path among the main area's
# widgets: JupyterLab's currentWidget follows the keyboard focus, which a headless window may
# never give it until something in the notebook is clicked (the test clicks a cell, then checks).
_NOTEBOOK_READY = """
const app = window.jupyterapp;
const panel = app && Array.from(app.shell.widgets('main')).find(
    w => w.context && w.context.path === arguments[0]);
return !!(panel && panel.context.isReady
          && panel.sessionContext.session && panel.sessionContext.session.kernel
          && panel.sessionContext.session.kernel.connectionStatus === 'connected'
          && panel.sessionContext.session.kernel.status === 'idle');
"""
_NOTEBOOK_CURRENT = """
const panel = window.jupyterapp.shell.currentWidget;
return !!(panel && panel.context && panel.context.path === arguments[0]);
"""
_RUN_UP_TO = """
const [cellIndex, done] = arguments;
const app = window.jupyterapp, notebook = app.shell.currentWidget.content;
notebook.activeCellIndex = cellIndex;
app.commands.execute('notebook:run-all-above')
  .then(above => app.commands.execute('notebook:run-cell').then(cell => done({above, cell})))
  .catch(error => done({error: String(error)}));
"""
_KERNEL_IDLE = "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle';"


def _slider(driver, description: str):
    for slider in driver.find_elements(By.CSS_SELECTOR, ".widget-interact .widget-slider"):
        if slider.find_element(By.CSS_SELECTOR, ".widget-label").text == description:
            return slider
    return None


def _figure_src(driver) -> str | None:
    """The data URL of the figure in the interact's output area (the cell's own static figure
    sits outside ``.widget-interact``)."""
    try:
        images = driver.find_elements(By.CSS_SELECTOR, ".widget-interact .widget-output img")
        src = images[0].get_attribute("src") if len(images) == 1 else None
    except StaleElementReferenceException:   # the output area redrew under us
        return None
    return src if src and src.startswith("data:image/png;base64,") else None


def test_teacher_temperature_slider_redraws_the_figure(lab, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,))
    started = time.perf_counter()
    try:
        browser.get(lab["url"])
        WebDriverWait(browser, OPEN_WAIT_S, poll_frequency=0.2).until(
            lambda d: d.execute_script(_NOTEBOOK_READY, LECTURE),
            f"{LECTURE} did not open with an idle python3 kernel within {OPEN_WAIT_S} s")
        browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell").click()   # focus it
        wait.until(lambda d: d.execute_script(_NOTEBOOK_CURRENT, LECTURE),
                   f"{LECTURE} did not become JupyterLab's current widget when clicked")
        # Each command resolves to whether its cells ran without an error.
        outcome = browser.execute_async_script(_RUN_UP_TO, lab["widget_cell"])
        assert outcome == {"above": True, "cell": True}, (
            f"running {LECTURE} down to its widget cell (index {lab['widget_cell']}) failed: {outcome}")
        before = wait.until(_figure_src, f"the interact's figure did not render within {WAIT_S} s")
        wait.until(lambda d: d.execute_script(_KERNEL_IDLE), "the kernel stayed busy")
        slider = wait.until(lambda d: _slider(d, "tau_t"), "no slider labelled tau_t in the interact")
        readout_before = slider.find_element(By.CSS_SELECTOR, ".widget-readout").text
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
        browser.save_screenshot(str(ARTIFACTS / "before.png"))

        # noUiSlider's keyboard handling: PageUp moves the handle several steps in one change.
        handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
        browser.execute_script("arguments[0].focus()", handle)
        handle.send_keys(Keys.PAGE_UP)

        after = wait.until(lambda d: (src := _figure_src(d)) not in (None, before) and src,
                           f"the figure did not change within {WAIT_S} s of moving tau_t")
        wait.until(lambda d: d.execute_script(_KERNEL_IDLE), "the kernel stayed busy")
        readout_after = _slider(browser, "tau_t").find_element(By.CSS_SELECTOR, ".widget-readout").text
        after = _figure_src(browser) or after   # the last redraw, if a second one came
        browser.save_screenshot(str(ARTIFACTS / "after.png"))
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / "failure.png"))
        raise
    print(f"\nbrowser test: tau_t {readout_before} -> {readout_after}, "
          f"{time.perf_counter() - started:.1f} s in the browser")

    assert float(readout_after) > float(readout_before), (
        f"PageUp on the tau_t handle should raise it: readout {readout_before!r} -> {readout_after!r}")
    assert after != before, "the figure is the same image after the slider moved"
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "after.png", REFERENCE_SCREENSHOT)
