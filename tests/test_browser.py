"""The explorer notebook in a real browser: JupyterLab + headless Debian Chromium driven by Playwright.

Starts JupyterLab on a free localhost port (random token, a temporary copy of the notebook, a temporary
Jupyter config that disables the announcements plugin, so no news toast covers the page), opens
``05_explorer.ipynb``, runs all cells, waits for the app, moves the step-size slider with the keyboard
(the app runs the flows again), steps the frame slider back (an earlier recorded frame is drawn), checks
that the plot and the numbers changed and no error is shown, then presses Play and sees the frames move.
Screenshots go to ``test-artifacts/`` (gitignored). Skipped only when Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_explorer.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("playwright (Python) is not installed", allow_module_level=True)
if not os.path.exists(CHROMIUM):
    pytest.skip(f"Debian chromium is not installed at {CHROMIUM}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop_server(proc: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server to shut down (it stops its kernels), then make sure its process group is gone."""
    try:
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=5).close()
        proc.wait(timeout=15)
    except Exception:  # noqa: BLE001 - fall through to signals
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port over a temporary copy of the notebook; yields (base_url, token)."""
    tmp = tmp_path_factory.mktemp("lab")
    notebooks = tmp / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOK, notebooks / NOTEBOOK.name)
    config = tmp / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    for d in ("runtime", "settings", "workspaces"):
        (tmp / d).mkdir()
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "PDVIZ_FAST": "1",
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        # window.jupyterapp lets the test run commands ("run all cells") instead of hunting menus
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        # no PyPI queries from the extension manager, no terminals: nothing here needs the network
        "--LabApp.extension_manager=readonly",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = tmp / "jupyter.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield base, token
    finally:
        _stop_server(proc, base, token)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "browser-jupyter.log")


def _visible_errors(page) -> list[str]:
    """Texts of shown pdviz error boxes and of error outputs (tracebacks) in the notebook."""
    texts = page.eval_on_selector_all(
        ".pdviz-error",
        "els => els.filter(e => e.offsetParent !== null && e.innerText.trim()).map(e => e.innerText.trim())",
    )
    texts += page.eval_on_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
        "els => els.map(e => e.innerText).filter(t => /Traceback|Error/.test(t))",
    )
    return texts


def test_explorer_in_browser(lab):
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?reset&token={token}", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            # the notebook shows its app twice (where it is built and again at its end): two views of one
            # set of widgets; out-of-view cells are not laid out, so the test works on the last view
            page.evaluate(
                "() => { window.lastApp = () => [...document.querySelectorAll('.pdviz-app')]"
                ".filter(a => a.querySelector('.pdviz-step-size')).pop() || document; }"
            )
            # the kernel (named in the notebook's metadata) must be up before the cells are queued
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.connectionStatus"
                " === 'connected'",
                timeout=60_000,
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            app = page.locator(".pdviz-app:has(.pdviz-step-size)").last
            plot = app.locator("img.pdviz-plot").first
            plot.wait_for(state="visible", timeout=90_000)
            readout = app.locator(".pdviz-readout").first
            page.wait_for_function(
                "() => { const r = lastApp().querySelector('.pdviz-readout');"
                " return r && /step/.test(r.innerText); }",
                timeout=60_000,
            )
            plot.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser-loaded.png"), full_page=False)
            src_before = plot.get_attribute("src")
            shot_before = plot.screenshot(path=str(ARTIFACTS / "browser-plot-before.png"))
            text_before = readout.inner_text()
            assert _visible_errors(page) == []

            # move the step-size slider one notch with the keyboard, as a user would: the app runs the
            # flows again with the new step, then shows the last frame of the new run
            slider = app.locator(".pdviz-step-size")
            readout_value = slider.locator(".widget-readout")
            value_before = readout_value.inner_text()
            handle = slider.locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowRight")
            page.wait_for_function(
                "([v]) => { const e = lastApp().querySelector('.pdviz-step-size .widget-readout');"
                " return e && e.innerText !== v; }",
                arg=[value_before],
                timeout=15_000,
            )
            page.wait_for_function(
                "([t]) => { const r = lastApp().querySelector('.pdviz-readout'); return r && r.innerText !== t; }",
                arg=[text_before],
                timeout=60_000,
            )
            text_after_slider = readout.inner_text()
            assert readout_value.inner_text() != value_before
            assert _visible_errors(page) == []

            # step the recorded frames back with the frame slider: an earlier frame, drawn from the record
            frame = app.locator(".pdviz-frame .noUi-handle").first
            frame.focus()
            for _ in range(3):
                frame.press("ArrowLeft")
            page.wait_for_function(
                "([t]) => { const r = lastApp().querySelector('.pdviz-readout'); return r && r.innerText !== t; }",
                arg=[text_after_slider],
                timeout=30_000,
            )
            page.wait_for_function(
                "([s]) => { const i = lastApp().querySelector('img.pdviz-plot'); return i && i.src !== s; }",
                arg=[src_before],
                timeout=30_000,
            )
            time.sleep(0.5)  # let the new image finish decoding before the screenshot
            shot_after = plot.screenshot(path=str(ARTIFACTS / "browser-plot-after.png"))
            page.screenshot(path=str(ARTIFACTS / "browser-after-frames.png"), full_page=False)
            assert shot_after != shot_before, (
                "the plot looks the same after the slider change and a frame step"
            )
            assert _visible_errors(page) == []

            # Play replays the frames on its own (the browser moves the frame slider); nothing breaks
            text_before_play = readout.inner_text()
            app.locator(".pdviz-play button").first.click()
            page.wait_for_function(
                "([t]) => { const r = lastApp().querySelector('.pdviz-readout'); return r && r.innerText !== t; }",
                arg=[text_before_play],
                timeout=60_000,
            )
            page.screenshot(path=str(ARTIFACTS / "browser-after-play.png"), full_page=False)
            assert _visible_errors(page) == []
        finally:
            browser.close()
