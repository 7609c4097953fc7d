"""Real-browser test harness: Debian's Chromium driven by Playwright, local servers, screenshots on failure.

    from browser import Server, chromium, jupyter, page_at, screenshots_on_failure, assert_usable

    with chromium() as context:                          # one headless Chromium (a persistent context)
        server = jupyter(root, env={...}).start()        # JupyterLab on 127.0.0.1, own token, temp settings
        try:
            page = page_at(context, server.url("lab/tree/nb.ipynb"), width=1024)
            with screenshots_on_failure(page, shots_dir, "nb-1024"):
                assert_usable(page.locator(".my-button"), "my button")
        finally:
            server.stop()

- `chromium()` starts the browser found by `find_chromium()` ($TOONLIB_CHROMIUM, else chromium on PATH) with
  the flags this closed network needs and a fresh profile; a missing browser is an error, never a skip.
- `Server` runs any command (a notebook server, a web app) in its own process group on a free port of
  127.0.0.1, waits until a URL answers, and `stop()` ends the whole group. Pass its `stop` to a fixture
  finalizer so the test that started a server also stops it.
- `screenshots_on_failure` saves a full-page screenshot when the block fails and names the file in the
  assertion message; `screenshot` saves one on purpose.
- `assert_usable(locator, name)` checks what a person needs to use a control: visible, inside the window,
  not clipped by a scrolling ancestor, not covered by another element, and clickable.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

#: Chromium flags: headless, no sandbox (root in CI), and nothing that reaches for the network by itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def find_chromium() -> str:
    """The Chromium executable: $TOONLIB_CHROMIUM, else `chromium` / `chromium-browser` on PATH."""
    candidates = [os.environ.get("TOONLIB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("no Chromium found for the browser tests: install it (Debian: apt-get install chromium) "
                         "or point $TOONLIB_CHROMIUM at the executable")


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator:
    """A Playwright `BrowserContext` of a fresh headless Chromium profile; closed and deleted on exit."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=find_chromium(), headless=headless, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def page_at(context, url: str, width: int, height: int = 900):
    """A new page of `context` with a window of `width` x `height` CSS px, opened at `url`."""
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(url)
    return page


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (nothing else holds it)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class Server:
    """A command serving HTTP on 127.0.0.1, in its own process group (so `stop` also ends its children).

    `command` may contain "{port}", filled with a free port; `ready_path` is fetched until it answers.
    Output goes to `log` (a file), whose tail is shown when the server does not come up.
    """

    def __init__(self, command: Sequence[str], ready_path: str = "", env: dict | None = None,
                 cwd: str | os.PathLike | None = None, log: str | os.PathLike | None = None, timeout: float = 120):
        self.port = free_port()
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.ready_path, self.env, self.cwd, self.timeout = ready_path, env, cwd, timeout
        self.log = Path(log) if log else Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> "Server":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                            env={**os.environ, **(self.env or {})}, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url(self.ready_path), timeout=5):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers (an error page is an answer)
            except OSError:
                time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise AssertionError(f"{self.command[:4]} did not answer on {self.url(self.ready_path)}; "
                             f"log {self.log}:\n{tail}")

    def stop(self) -> None:
        """End the server's whole process group: SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def jupyter(root: str | os.PathLike, app: str = "lab", python: str = sys.executable, env: dict | None = None,
            token: str = "toonlib-test") -> Server:
    """A Jupyter server over `root`: `app` "lab" (JupyterLab), "notebook" (Notebook 7 or 6) or "nbclassic".

    It listens on 127.0.0.1 only, with `token`, fresh settings and workspaces (no news, no update check),
    and runs its kernels with `python`'s environment plus `env`. Open `server.url(f"lab/tree/x.ipynb?token=...")`
    (JupyterLab, Notebook 7) or `server.url("notebooks/x.ipynb?token=...")` (Notebook 6); `url_token` is
    the query string.
    """
    state = Path(tempfile.mkdtemp(prefix="jupyter-state-"))
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"checkForUpdates": False,
                                                                           "fetchNews": "false"}))
    env = {"JUPYTERLAB_SETTINGS_DIR": str(state / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(state / "runtime"), "JUPYTER_CONFIG_DIR": str(state / "config"),
           **(env or {})}
    if app == "notebook" and _notebook_major(python) < 7:
        options = ["--NotebookApp.ip=127.0.0.1", "--NotebookApp.port={port}", "--NotebookApp.port_retries=0",
                   f"--NotebookApp.token={token}", f"--NotebookApp.notebook_dir={root}",
                   "--NotebookApp.open_browser=False", "--NotebookApp.allow_root=True"]
    else:
        options = ["--ServerApp.ip=127.0.0.1", "--ServerApp.port={port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                   "--ServerApp.open_browser=False", "--ServerApp.allow_root=True", "--LabApp.news_url=None",
                   "--LabApp.extension_manager=readonly",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = Server([python, "-m", "jupyter", app, "--no-browser", *options], ready_path=f"api?token={token}",
                    env=env, cwd=root, log=state / "server.log")
    server.url_token = f"token={token}"
    return server


def _notebook_major(python: str) -> int:
    out = subprocess.run([python, "-c", "import notebook; print(notebook.__version__)"], capture_output=True,
                         text=True)
    return int(out.stdout.split(".")[0]) if out.returncode == 0 else 7


def screenshot(page, directory: str | os.PathLike, name: str) -> Path:
    """Save a full-page screenshot of `page` as `directory/name.png`; returns its path."""
    path = Path(directory) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def screenshots_on_failure(page, directory: str | os.PathLike, name: str) -> Iterator[None]:
    """On any failure inside the block: save a screenshot and fail with a message naming its file."""
    try:
        yield
    except Exception as exc:
        try:
            path = screenshot(page, directory, f"FAILED-{name}")
            where = f"screenshot: {path}"
        except Exception as shot_error:  # the page itself may be gone
            where = f"(no screenshot: {shot_error})"
        raise AssertionError(f"{name}: {exc}\n{where}") from exc


_GEOMETRY = """element => {
    const box = element.getBoundingClientRect();
    let clip = {left: 0, top: 0, right: window.innerWidth, bottom: window.innerHeight};
    for (let node = element.parentElement; node && node !== document.body; node = node.parentElement) {
        const style = getComputedStyle(node);
        if (style.overflowX !== 'visible' || style.overflowY !== 'visible') {
            const r = node.getBoundingClientRect();
            clip = {left: Math.max(clip.left, r.left), top: Math.max(clip.top, r.top),
                    right: Math.min(clip.right, r.right), bottom: Math.min(clip.bottom, r.bottom)};
        }
    }
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    const hit = document.elementFromPoint(x, y);
    return {box: {left: box.left, top: box.top, right: box.right, bottom: box.bottom, width: box.width,
                  height: box.height}, clip: clip, covered_by: hit && !element.contains(hit) && !hit.contains(element)
            ? (hit.className && hit.className.toString() || hit.tagName) : null};
}"""


def geometry(locator) -> dict:
    """Where `locator`'s element is (`box`), the visible area its scrolling ancestors and the window leave it
    (`clip`), and the element found at its centre when that is another one (`covered_by`)."""
    return locator.evaluate(_GEOMETRY)


def assert_usable(locator, name: str, click: bool = True) -> None:
    """`locator` can be used by a person: visible, whole (not clipped by the window or a scrolling ancestor),
    not covered at its centre, and (with `click`) it takes a real mouse click."""
    locator.scroll_into_view_if_needed()
    assert locator.is_visible(), f"{name} is not visible"
    where = geometry(locator)
    box, clip = where["box"], where["clip"]
    assert box["width"] > 0 and box["height"] > 0, f"{name} has no size: {box}"
    inside = (box["left"] >= clip["left"] - 1 and box["right"] <= clip["right"] + 1
              and box["top"] >= clip["top"] - 1 and box["bottom"] <= clip["bottom"] + 1)
    assert inside, f"{name} is cut off: {box} outside the visible area {clip}"
    assert where["covered_by"] is None, f"{name} is covered by {where['covered_by']!r}"
    if click:
        locator.click(timeout=10_000)
