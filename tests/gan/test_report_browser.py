"""report.html in a real browser: a short real run's report, loaded by headless Chromium,
shows its grid (a screenshot with the grid's region not blank) and logs no console error.

Chromium is driven directly: `--screenshot` for the picture, and the DevTools protocol
(`--remote-debugging-port`, through websocket-client) for console messages, uncaught
exceptions and failed loads, and for where the latest grid is drawn. A control page with a
missing image and a console.error shows that such errors are caught.

Debian's `chromium` package is the browser (.ci/run installs it). Without it the test skips,
except under CI=true, where a missing browser is a failure.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from gan.report import write_report

ROOT = pathlib.Path(__file__).resolve().parents[2]
WINDOW = (1200, 1600)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--window-size={WINDOW[0]},{WINDOW[1]}"]


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        message = ("chromium is not installed (apt-get install -y --no-install-recommends "
                   "chromium): the report's browser test needs it")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A real (dry) training run, as a user starts it; its report, final."""
    folder = tmp_path_factory.mktemp("browser") / "run"
    done = subprocess.run([sys.executable, "-m", "apps.train_dcgan", "--dry_run", "--out_dir",
                           str(folder), "--no_progress"], cwd=ROOT, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    if not (folder / "report.html").exists():
        write_report(str(folder), alive=False)
    return folder


class DevTools:
    """One headless Chromium with a DevTools websocket to its first page."""

    def __init__(self, chromium, profile):
        websocket = pytest.importorskip("websocket", reason="websocket-client (the test "
                                        "extra) talks to Chromium's DevTools protocol")
        self.log = open(os.path.join(profile, "chromium.log"), "wb")
        self.process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "about:blank"], stdout=self.log, stderr=subprocess.STDOUT)
        port_file = pathlib.Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                pytest.fail(f"chromium did not open its DevTools port; log:\n{self.tail()}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as f:
            pages = [t for t in json.load(f) if t["type"] == "page"]
        # Chromium accepts a connection without an Origin header (no --remote-allow-origins)
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"],
                                                  timeout=30, suppress_origin=True)
        self.next_id, self.events = 0, []
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")

    def tail(self):
        self.log.flush()
        return pathlib.Path(self.log.name).read_text(errors="replace")[-3000:]

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method, seconds=30):
        deadline = time.monotonic() + seconds
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {seconds} s")
            self.events.append(json.loads(self.socket.recv()))  # at most 30 s each

    def load(self, url):
        """Navigate to `url`; returns the console errors, exceptions and failed loads."""
        self.events = []
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.call("Runtime.evaluate", expression="1", awaitPromise=True)  # drain the queue
        return [_error_text(e) for e in self.events if _error_text(e)]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"]["value"]

    def close(self):
        try:
            if getattr(self, "socket", None):
                self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()


def _error_text(event):
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"exception: {details.get('exception', {}).get('description', details)}"
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console.error: " + " ".join(str(a.get("value", a.get("description")))
                                            for a in params.get("args", []))
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        entry = params["entry"]
        return f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
    return None


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    devtools = DevTools(chromium, str(tmp_path_factory.mktemp("profile")))
    try:
        yield devtools
    finally:
        devtools.close()


def test_the_console_check_catches_errors(browser, tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><img src="samples/missing.png">'
                    '<script>console.error("control error")</script></body></html>')
    errors = browser.load(page.as_uri())
    assert any("control error" in e for e in errors), errors
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors), errors


def test_a_real_runs_report_loads_cleanly(browser, run_folder):
    errors = browser.load((run_folder / "report.html").as_uri())
    assert errors == []
    images = browser.evaluate("[...document.images].map(i => [i.getAttribute('src'), "
                              "i.complete, i.naturalWidth])")
    assert images and all(done and width > 0 for _, done, width in images), images
    assert browser.evaluate("document.querySelectorAll('svg.chart').length") >= 2
    assert "train_dcgan" in browser.evaluate("document.body.innerText")


def test_the_screenshot_shows_the_page_and_its_grid(chromium, browser, run_folder, tmp_path,
                                                   tmp_path_factory):
    browser.load((run_folder / "report.html").as_uri())
    box = browser.evaluate("(() => { const r = document.querySelector('.latest img')"
                           ".getBoundingClientRect(); return [r.left, r.top, r.right, "
                           "r.bottom]; })()")
    shot = tmp_path / "report.png"
    profile = tmp_path_factory.mktemp("profile")
    subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                    (run_folder / "report.html").as_uri()],
                   check=True, timeout=120, capture_output=True)
    with Image.open(shot) as picture:
        assert picture.size == WINDOW
        rgb = np.asarray(picture.convert("RGB"))
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"a near-blank page: {len(colours)} colours"
    left, top, right, bottom = (int(round(v)) for v in box)
    assert right - left > 100 and bottom - top > 100 and bottom <= WINDOW[1]
    grid = rgb[top + 4:bottom - 4, left + 4:right - 4].astype(float)
    # the dry run's grid: 64 noisy grey samples between white padding lines
    assert grid.std() > 10 and len(np.unique(grid.reshape(-1, 3), axis=0)) > 20
    assert (grid.min(axis=2) > 245).mean() > 0.02  # the padding between tiles
