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
import random
import re
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
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")

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


#: What a server says when another program took its port: Python's OSError (uvicorn's "address already in use"),
#: Jupyter's "The port N is already in use", toonlib's `check_port`, Gradio's "Cannot find empty port in range".
PORT_TAKEN = re.compile(r"address already in use|port \d+ is already in use|cannot find empty port", re.IGNORECASE)
_PORTS_GIVEN: set[int] = set()  # `free_port`'s answers so far in this process


def _outgoing_ports() -> range:
    """The ports the kernel gives outgoing connections (Linux's ip_local_port_range; elsewhere IANA's 49152-65535)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 49152, 65535
    return range(low, high + 1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server that binds it later.

    Port 0's choice came from the ports the kernel gives outgoing connections, so any connection made before the
    server started could take it, and two servers started one after the other could be given the same number
    (forty-fourth session's audit): this is one outside that range, never the same twice in this process. Another
    program may still take it first: `Server.start` and `on_a_free_port` then start the server on another."""
    outgoing, pick = _outgoing_ports(), random.SystemRandom()  # not `random`'s: tests seed it, every process alike
    for _ in range(200):
        port = pick.randrange(10000, 32768)
        if port not in outgoing and port not in _PORTS_GIVEN and port_is_free("127.0.0.1", port):
            _PORTS_GIVEN.add(port)
            return port
    with socket.socket() as sock:  # no free room outside the kernel's range: its choice
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_a_free_port(start: Callable[[int], T], tries: int = 3) -> tuple[int, T]:
    """`start(port)` on a `free_port()`, and again on another while it fails because another program took that port
    first (`PORT_TAKEN`): (the port, what `start` returned)."""
    for _ in range(tries - 1):
        port = free_port()
        try:
            return port, start(port)
        except OSError as exc:
            if not PORT_TAKEN.search(str(exc)):
                raise
    port = free_port()
    return port, start(port)


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
        self.template = list(command)
        self.port = free_port()
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.ready_path, self.env, self.cwd, self.timeout = ready_path, env, cwd, timeout
        self.log = Path(log) if log else Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self, tries: int = 3) -> "Server":
        """Start the command and wait until `ready_path` answers. Where it ends saying that another program took its
        port (`PORT_TAKEN`) it is started again on another, up to `tries` times in all."""
        for attempt in range(1, tries + 1):
            said_before = self.log.stat().st_size if self.log.exists() else 0
            if self._started():
                return self
            said = self.log.read_bytes()[said_before:].decode(errors="replace")
            if attempt == tries or self.process.poll() is None or not PORT_TAKEN.search(said):
                break
            self.port = free_port()
            self.command = [part.replace("{port}", str(self.port)) for part in self.template]
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise AssertionError(f"{self.command[:4]} did not answer on {self.url(self.ready_path)}; "
                             f"log {self.log}:\n{tail}")

    def _started(self) -> bool:
        """Run the command; whether `ready_path` answered within `timeout` (False once the command has ended)."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                            env={**os.environ, **(self.env or {})}, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url(self.ready_path), timeout=5):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers (an error page is an answer)
            except OSError:
                time.sleep(0.5)
        return False

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
