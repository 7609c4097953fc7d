"""The Toonify web app, `toonlib app` (docs/design.md section 14): a photo in, its toon out, in the browser.

    toonlib app                      # http://127.0.0.1:7860
    toonlib app --share              # in Colab: also a public *.gradio.live link

A photo (upload or webcam) gives the FFHQ-aligned face, its toon and the toon pasted back into the photo.
A photo with several faces shows them all; clicking one toonifies it too. The swap-resolution choice (in px)
re-renders the toons from the cached latents (no new projection). Results download as `<photo>-toon.png`,
`-aligned.png` and `-pasted.png`, the photo's own name (a webcam photo's: its time, `webcam-2026-12-03-061459`).

`ToonApp` is the logic, without Gradio: one `Toonifier` per inversion mode offered, shared by every visitor
(models load once per process), one `Session` per visitor, the limits and the error messages.
`ToonApp.build()` lays it out with Gradio (imported only there) and `launch` serves it. Every event that runs
a model waits in one queue with a concurrency of 1, and a lock guards the shared models as well: the toon
generator is re-blended for each visitor's swap resolution, so two visitors' events must never interleave. A new
photo stops the old photo's events, Stop the visitor's (the running one and the Toonify and face clicks before it) and
a closed tab its visitor's: a running projection stops after its current step, so the queue moves on at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import inspect
import io
import json
import math
import numbers
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from PIL import Image

from .align import AlignedFace, LandmarkBackendError, NoFaceError
from .blending import check_setting
from .checkpoints import CheckpointError
from .files import atomic_write_path, entry_held, hold_entry, visible_stem
from .images import ImageReadError, quiet_large_images, read_image, too_many_pixels
from .losses import PerceptualWeightsError, build_lpips
from .messages import check_count, check_number, counted, install_line, warn
from .options import DEFAULT_STEPS, DEFAULT_SWAP_RES, INVERT_MODES, MAX_PIXELS, MAX_STEPS, OPTIMIZING_MODES, PORTS
from .pipeline import INVERT_LABELS, Toonifier, blend_words, paste_faces, start_steps
from .projection import Callback

__all__ = ["DEFAULT_STEPS", "MAX_PIXELS", "MAX_STEPS", "PhotoTooLargeError", "Session", "ToonApp", "View",
           "check_port", "check_settings", "launch", "require_gradio"]

#: The oldest Gradio the app is built for, as pyproject's `app` extra asks (tests/test_package.py checks they agree);
#: Gradio 5 failed at `Gallery(buttons=...)` with a traceback, after the models loaded (forty-second session's audit).
GRADIO_MIN = (6, 0)
MAX_UPLOAD = "50mb"  # Gradio refuses larger uploads in the browser, before they reach the server
ERRORS = (ValueError, LandmarkBackendError, PerceptualWeightsError)  # shown to the visitor as they are
RESULTS = ("aligned", "toon", "pasted")  # the result images, in the order of `View`'s fields and the outputs
# While a toonify or a face pick waits or runs, Gradio shows its queue place or steps over the toon (a full
# progress; a re-blend's is minimal): out of view on a phone, whose results are below the fold. Its progress text, not
# the tracker alone: a failed event's tracker stays, with an "Error" badge (the button said "Toonifying..." for good).
BUSY = "body:has(#toon [data-testid=status-tracker].full:not(.hide) .progress-text)"
# While the photo uploads (a phone's 12 MP photo on mobile data: half a minute), the Toonify button says so: pressed
# then, the page scrolled "Uploading 1 file..." out of view and nothing changed until the upload ended.
UPLOADING = "body:has(#photo .uploading)"
# Result images fill their boxes (a small model's 256 px toon is drawn as large as a 1024 px one); the face picker shows
# small whole faces, however few, every one in view (its box grows with them) and below its label (which covered the top
# of the first row), three to a row on a 360 px phone (88 px ones fitted two, and a group's last row was cut off inside
# the picker's scroll box). While busy, the Toonify button says so where the visitor pressed it (its label swapped at
# once: Gradio's 0.2 s transition shrank and grew it), and the status line (the last run's words, greyed under the
# progress, which overlapped them) is blank; its words come back at once (Gradio's fade of 0.15 s kept them hidden after
# the line showed). The hints and the slider's ends were light grey at 12 px (1.9:1 on white): now the labels' grey
# (4.8:1). The steps slider shows a ring when the keyboard focuses it (Gradio's had none; fortieth session's audit).
# Where the browser allows no webcam (`PAGE_SCRIPT` marks the page's <html> `no-webcam`), its source button is hidden
# and the intro says why. (Gradio adds each rule again under its container's classes, which outrank a rule's own.)
CSS = ("#toon img, #aligned img { width: 100%; height: 100%; object-fit: contain; } "
       "#faces .grid-container { grid-template-columns: repeat(auto-fill, 84px) !important; "
       "padding-top: 30px !important; } "
       "#faces .grid-wrap { height: auto !important; min-height: 0 !important; max-height: 400px; } "
       f"#toonify {{ transition: none; }} {UPLOADING} #toonify, {BUSY} #toonify {{ font-size: 0; cursor: progress; }} "
       f"{UPLOADING} #toonify::after {{ content: 'Uploading your photo\\2026'; "
       "font-size: var(--button-large-text-size); } "
       f"{BUSY} #toonify::after {{ content: 'Toonifying\\2026'; font-size: var(--button-large-text-size); }} "
       f"{BUSY} #status {{ visibility: hidden; }} #status * {{ transition: none; }} "
       "#steps .info-text, #swap .info-text, #steps .min_value, #steps .max_value { "
       "color: var(--block-title-text-color); font-size: 13px; } "
       "#steps input[type=range]:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; } "
       ".no-webcam #photo button[aria-label='Capture from camera'], .no-webcam #intro .webcam, "
       "html:not(.no-webcam) #intro .no-webcam-note { display: none; }")
# After a run, or a photo whose upload the status line refuses, on a screen too narrow for the results beside the photo,
# the status line (and the toon above it) is brought into view when it is out of view and says something (a phone
# showed nothing new where the visitor pressed Toonify; a file that is no image, or too large, showed as a thin empty
# frame, its message ~570 px below the fold). Once Gradio has drawn the outputs.
SHOW_RESULT = """() => setTimeout(() => {
    const status = document.querySelector('#status'), toon = document.querySelector('#toon');
    const below = toon.getBoundingClientRect().top >= document.querySelector('#toonify').getBoundingClientRect().bottom;
    const box = status.getBoundingClientRect();
    if (below && status.innerText.trim() && (box.top < -1 || box.bottom > window.innerHeight + 1))
        status.scrollIntoView({block: 'end', behavior: 'smooth'});
}, 100)"""
# Formats every browser draws (Pillow's names; MPO: a camera's JPEG). Others (HEIC, TIFF) previewed as an empty frame
# in Chromium and Firefox: the page shows a JPEG copy of them instead (`ToonApp.preview`).
BROWSER_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "ICO", "AVIF"}
PREVIEW_PX = 2048  # a preview's longer side at most
# What the intro says where the browser allows no webcam (`PAGE_SCRIPT`).
NO_WEBCAM = ("No webcam here: browsers allow one only over https or on the app's own machine (localhost); "
             "`toonlib app --share` gives an https link.")
# Every hour, the visitors' files over an hour old are deleted (uploads by Gradio, the app's own by `_VisitorsFiles`):
# within two hours, as the page says.
DELETE_AFTER_S = 3600
# The start of the name of each app's own folder in Gradio's upload folder (`_AppFolder`), tempfile's 8 random
# characters after it.
APP_FOLDER_PREFIX = "toonlib-app-"
# A download's name is the photo's name and "-face12-aligned.png": the photo's part is cut to these many bytes (UTF-8),
# since a file name has at most 255 (a longer photo name failed every toonify with bare "Error" badges).
NAME_BYTES = 200
# The page's count of Toonify and face clicks (`_Visitors.start`). Counted as the click happens, so it also brings the
# run's progress into view on a screen too narrow for the results beside the photo: the Toonify button to the top, the
# toon box (where the steps show) under it. A phone showed "Toonifying..." alone for minutes, the steps below the fold.
COUNT_CLICK = """(n) => {
    const toon = document.querySelector('#toon'), button = document.querySelector('#toonify');
    if (toon && button && toon.getBoundingClientRect().top >= button.getBoundingClientRect().bottom
            && toon.getBoundingClientRect().bottom > window.innerHeight + 1)
        button.scrollIntoView({block: 'start', behavior: 'smooth'});
    return n + 1;
}"""
# The photo a Toonify click is made for: the one the page shows when it is pressed (the server's copy of the upload; a
# photo still uploading once its upload is done, as Gradio's page waits for it), or `NO_PHOTO`. Its event takes it
# along: a click that the page held while another event ran goes out with the page's photo then, which a new photo
# (or ✕) had replaced, and ran for a photo nobody had pressed Toonify for (`on_toonify`). "": not said (API callers).
PRESSED_FOR = "(photo) => photo ? photo.path : 'no photo'"
NO_PHOTO = "no photo"  # never a server path (they are absolute)
WHOLE_STEPS = "Math.max(1, Math.round(n) || 1)"  # the page's steps box, `n`, as a whole count (an empty box: 1)
#: The page's script, run once it loads (`launch(js=...)`):
#: - Enter in the steps box does what leaving it does (Gradio clamps the box's number, and `WHOLE_STEPS` rounds it, when
#:   the box loses focus): a typed 0 or 99999 stayed shown after Enter, where many press it rather than Tab.
#: - A HEIC photo the browser leaves untyped is typed as an image before Gradio's page sees it, picked or dropped:
#:   Chromium on Linux types `.heic` from its lower-case name alone, and Gradio's page, which keeps only files of an
#:   image/* type, refused an iPhone's `IMG_0002.HEIC` with a red "Invalid file type" (thirty-second session's audit).
#: - A photo named with a dot first (`.me.jpg`) is renamed without it: where Gradio's upload folder lies inside the
#:   server's working folder (`cd /tmp && toonlib app`, a service started in /), Gradio refuses to take a dotfile into
#:   its cache, and the page showed bare "Error" badges beside the last photo's toon (thirty-fourth session's audit).
#:   Allowing that folder in `launch` instead would serve every upload inline, an uploaded .html page included.
#: - Any other file the browser does not type as an image (a PDF, a text file) is typed as one, so that the server says
#:   what it is in the status line, as it does a file named .jpg that is no image: Gradio's page refused it with a red
#:   toast, "Invalid file type: doc.pdf. Only image/* allowed.", one more at each file (fortieth session's audit).
#: - Where the page is no secure context (plain http from another machine: `--host 0.0.0.0`), browsers allow no
#:   webcam: its source button is hidden (`CSS`) and the intro says why (fortieth session's audit: it offered the
#:   webcam, which showed Gradio's untranslated "image.no_webcam_support").
#: - A press of the steps slider's reset button (Gradio's "↺") is noted, for the release it sends (`ToonApp.build`).
PAGE_SCRIPT = r"""() => {
    if (!window.isSecureContext) document.documentElement.classList.add('no-webcam');
    document.addEventListener('click', (e) => {
        if (e.target.closest?.('#steps [data-testid=reset-button]')) window.toonlibStepsReset = true;
    }, true);
    document.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && e.target.matches('#steps input[type=number]')) e.target.blur();
    }, true);
    const heic = (file) => !file.type && /\.(heic|heif)$/i.test(file.name);
    const untyped = (file) => !file.type.startsWith('image/');
    const unfit = (file) => untyped(file) || file.name.startsWith('.');
    const fitted = (files) => {
        const list = new DataTransfer();
        for (const file of files)
            list.items.add(unfit(file) ? new File([file], file.name.replace(/^\.+/, '') || 'photo',
                                                  {type: heic(file) ? 'image/heic' : untyped(file) ? 'image/x-unknown'
                                                   : file.type, lastModified: file.lastModified}) : file);
        return list.files;
    };
    const input = () => document.querySelector('#photo input[type=file]');
    document.addEventListener('change', (e) => {
        const files = Array.from(e.target.files || []);
        if (e.target === input() && files.some(unfit)) e.target.files = fitted(files);
    }, true);
    document.addEventListener('drop', (e) => {
        const files = Array.from(e.dataTransfer?.files || []);
        if (!e.target.closest?.('#photo') || !files.some(unfit) || !input()) return;
        e.preventDefault();
        e.stopPropagation();
        input().files = fitted(files);
        input().dispatchEvent(new Event('change', {bubbles: true}));
    }, true);
}"""


#: What Markdown formats inside a line: a message's file names are shown as they are (`__face__.jpg` was shown as
#: "face.jpg" in bold, `*best*` in italics, and an `<i>` in a name made the rest of the message italic).
_MARKDOWN_MARKS = re.compile(r"([\\`*_~<\[\]&])")


def as_markdown_text(text: str) -> str:
    """`text` for the status line (Markdown) as it is written: each mark Markdown would format escaped."""
    return _MARKDOWN_MARKS.sub(r"\\\1", text)


class PhotoTooLargeError(ValueError):
    """The photo has more pixels than the app takes."""


#: What a click stopped while it waited for another visitor's run says once it would have started (`_Visitors.start`).
STOPPED_WAITING = "Stopped before it started (it waited for another visitor's toon)."
#: What a visitor's run, or a click waiting for one, says when the app is stopped (Ctrl-C, SIGTERM, a closed terminal):
#: they were shown bare red "Error" badges, without a word (forty-fourth session's audit).
APP_STOPPED = ("The app was stopped on its machine, and your photo and results are deleted with it: upload the photo "
               "again once the app is back.")
#: How long a stopping app waits for its visitors' events to say so (`_say_the_app_stops`): a projection step, an
#: encoder's pass or a re-blend on a loaded CPU.
STOPPING_S = 10


class _Stopped(Exception):
    """The page stopped a visitor's event (Stop, a new photo, a closed tab) after a projection step."""


class _Visitors:
    """Per visitor (Gradio's session hash): the photo their page shows (the server's copy of the upload), the photos
    it replaced, the stop of their running event with the photo it works on, and the page's count of Toonify and
    face clicks when they last pressed Stop.

    A new photo stops the events of the photos it replaced, the running one (after its current step) and those that
    wait (they end as they start); Stop stops the running one and those of the clicks before it. The page itself
    cancels nothing: Gradio's page dropped a Toonify click made while a cancel was unanswered, or cancelled it when
    the click went out before the new photo's own event. A Toonify click that the page holds while another event runs
    goes out with the photo shown then: it says the photo it was pressed for (`PRESSED_FOR`), and `on_toonify` ends it
    at once when that photo has been replaced (or removed) since."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # events run in worker threads; the new-photo event does not queue
        self._shown: dict[str, str | None] = {}
        self._replaced: dict[str, set[str]] = {}
        self._running: dict[str, tuple[threading.Event, str | None]] = {}
        self._stopped_at: dict[str, int] = {}
        self._unsaid: set[str] = set()  # visitors whose Stop found no run of theirs: their waiting click says it
        self.app_stopped = False  # set by `stop_all`

    def show(self, visitor: str, photo: str | None) -> None:
        """The visitor's page now shows `photo` (None: none)."""
        with self._lock:
            old = self._shown.get(visitor)
            self._shown[visitor] = photo
            replaced = self._replaced.setdefault(visitor, set())
            if old is not None and old != photo:
                replaced.add(old)
            replaced.discard(photo)  # the same file again
            running = self._running.get(visitor)
            if running is not None and running[1] != photo:
                running[0].set()

    def start(self, visitor: str, photo: str | None, clicks: int | None) -> threading.Event | str | None:
        """The stop of the visitor's event for `photo` that starts now, or None when their page has replaced the photo
        or they pressed Stop after the event's click (`clicks`: the page's count of clicks when the event was sent,
        None for an event no click sends; a click that came while another event ran is sent when that one ends, after
        a Stop that ended it). `STOPPED_WAITING` instead of None for the first event a Stop ended while it waited
        for another visitor's (nothing of theirs ran, so nothing had said it)."""
        with self._lock:
            if self.app_stopped:
                return APP_STOPPED
            stopped = clicks is not None and clicks <= self._stopped_at.get(visitor, -1)
            if stopped and visitor in self._unsaid and photo not in self._replaced.get(visitor, ()):
                self._unsaid.discard(visitor)
                return STOPPED_WAITING
            if stopped or photo in self._replaced.get(visitor, ()):
                return None
            self._unsaid.discard(visitor)  # a Stop pressed while nothing ran or waited: this click came after it
            stop = threading.Event()
            self._running[visitor] = (stop, photo)
            return stop

    def stop(self, visitor: str, clicks: int) -> None:
        """The visitor pressed Stop after `clicks` clicks: stop their running event and those of these clicks."""
        with self._lock:
            self._stopped_at[visitor] = clicks
            stop, _ = self._running.get(visitor, (None, None))
            if stop is not None:
                stop.set()  # its run says it stopped
                self._unsaid.discard(visitor)
            else:
                self._unsaid.add(visitor)

    def shows(self, visitor: str, photo: str | None) -> bool:
        """Whether the visitor's page (still open) shows `photo`."""
        with self._lock:
            return visitor in self._shown and self._shown[visitor] == photo

    def end(self, visitor: str, stop: threading.Event) -> None:
        """The event with `stop` has ended."""
        with self._lock:
            if self._running.get(visitor, (None,))[0] is stop:
                del self._running[visitor]

    def stop_all(self) -> None:
        """The app stops: stop every visitor's running event (after its current step); it and every later one say
        `APP_STOPPED`."""
        with self._lock:
            self.app_stopped = True
            for stop, _ in self._running.values():
                stop.set()

    def close(self, visitor: str) -> None:
        """The visitor's tab has closed: stop their running event and forget them."""
        with self._lock:
            stop, _ = self._running.pop(visitor, (None, None))
            if stop is not None:
                stop.set()
            self._shown.pop(visitor, None)
            self._replaced.pop(visitor, None)
            self._stopped_at.pop(visitor, None)
            self._unsaid.discard(visitor)


class _VisitorsFiles:
    """The files the page writes for its visitors (results, the pasted photo's copy shown, previews), which the app
    deletes itself: by age while it runs (`DELETE_AFTER_S`) and all of them when it stops. Gradio deletes only the
    files in its own sets, and adopts an output's file into them only while that output is the page's own: once an
    event had answered `gr.skip()` for it (a refused photo), each visitor got a copy of it, whose files no set held. A
    visitor's toons and aligned faces stayed on disk for good (fortieth session's audit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the events write in worker threads
        self._paths: set[str] = set()

    def add(self, path: str) -> str:
        """Note the file at `path` (written for a visitor); returns it."""
        with self._lock:
            self._paths.add(path)
        return path

    def delete(self, age: float | None = None) -> None:
        """Delete the files last written over `age` seconds ago (None: all of them), and forget them."""
        with self._lock:
            paths = list(self._paths)
        now = time.time()
        for path in paths:
            try:
                if age is not None and now - os.stat(path).st_mtime <= age:
                    continue
                os.remove(path)
            except FileNotFoundError:
                pass  # gone already (with Gradio's own files); written again, it is noted again
            except OSError:
                continue  # kept, and tried again at the next deletion
            with self._lock:
                self._paths.discard(path)
            _remove_if_empty(os.path.dirname(path))


def _remove_if_empty(folder: str) -> None:
    """Remove `folder` (one the app or Gradio made for a visitor's file, named by its content) when it is left empty:
    one per upload and result piled up across runs, empty (forty-second session's audit). A folder that holds anything
    stays (`os.rmdir` removes no file)."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)


class _AppFolder:
    """The folder of the apps this process serves, in Gradio's upload folder ($GRADIO_TEMP_DIR, else <tmp>/gradio):
    `APP_FOLDER_PREFIX` and random characters. Gradio puts their uploads there, they their results, and it is deleted
    whole when the last of them stops. Two apps on one machine shared Gradio's folder, whose files are named by their
    content: the same photo in both was the same files, and stopping one app deleted the photo and results the other
    still showed (forty-third session's audit). The process holds a lock on it (`files.hold_entry`: the kernel drops it
    when the process dies), so a later app tells a dead app's folder from a live one's (`_remove_dead_apps_folders`).

    Gradio reads its folder from $GRADIO_TEMP_DIR as it makes each component, also while it serves (each visitor's
    copy of an output an event updates), and as it checks an event's files: the variable names this folder while
    one of the apps runs (`take`), and is put back after the last (`release`). So two apps of one process share
    it, and a Gradio page of another library made meanwhile in the process puts its files there too."""

    _lock = threading.Lock()
    _current: _AppFolder | None = None  # the process's, while an app runs

    def __init__(self) -> None:
        from gradio.utils import get_upload_folder

        self.base = Path(get_upload_folder())  # as Gradio names it
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=APP_FOLDER_PREFIX, dir=self.base)).absolute()
        except OSError as exc:
            raise OSError(f"cannot make the app's folder for its visitors' photos in {self.base} "
                          f"({exc.strerror or exc}): set GRADIO_TEMP_DIR to a folder you can write") from None
        self._held = hold_entry(self.path)  # None where there are no such locks (Windows)
        self._before = os.environ.get("GRADIO_TEMP_DIR")
        self._apps = 0

    @classmethod
    def take(cls) -> _AppFolder:
        """The folder for an app that starts now: a new one (first deleting those of dead apps), or the one of the
        apps the process serves already; $GRADIO_TEMP_DIR names it."""
        with cls._lock:
            if cls._current is None:
                folder = cls()
                _remove_dead_apps_folders(folder.base)
                os.environ["GRADIO_TEMP_DIR"] = str(folder.path)
                cls._current = folder
            cls._current._apps += 1
            return cls._current

    @classmethod
    def release_of(cls, page: Any) -> None:
        """`release` the folder `page` took, once (at the end of its server's lifespan, or of `launch`)."""
        with cls._lock:
            folder, page.app_folder = getattr(page, "app_folder", None), None
        if folder is not None:
            folder.release()

    def release(self) -> None:
        """An app that took the folder has stopped: after the last one, delete it with everything in it and put
        $GRADIO_TEMP_DIR back."""
        with self._lock:
            self._apps -= 1
            if self._apps > 0:
                return
            if type(self)._current is self:
                type(self)._current = None
            if os.environ.get("GRADIO_TEMP_DIR") == str(self.path):
                if self._before is None:
                    os.environ.pop("GRADIO_TEMP_DIR", None)
                else:
                    os.environ["GRADIO_TEMP_DIR"] = self._before
            shutil.rmtree(self.path, ignore_errors=True)
            if self._held is not None:
                os.close(self._held)
                self._held = None


def _remove_dead_apps_folders(base: Path) -> None:
    """Delete the folders in `base` of apps that died without deleting them (kill -9, the machine's out-of-memory
    killer; a closed terminal before the forty-third session): their visitors' photos and results stayed for good, as
    no app deletes another's. Only folders named as `_AppFolder` names them, directly in `base` (no link), whose lock
    no process holds and whose newest file is over `DELETE_AFTER_S` old, past what the page promises (a new app's
    folder may be unlocked for a moment). Where locks cannot be told (no flock: Windows; another user's folder) none is
    deleted."""
    own_kind = re.compile(re.escape(APP_FOLDER_PREFIX) + r"[a-z0-9_]{8}")  # tempfile.mkdtemp's names
    try:
        with os.scandir(base) as found:
            folders = [Path(item.path) for item in found
                       if own_kind.fullmatch(item.name) and item.is_dir(follow_symlinks=False)]
    except OSError:
        return
    now = time.time()
    for folder in folders:
        newest = _newest_change(folder)
        if newest is not None and now - newest > DELETE_AFTER_S and entry_held(folder) is False:
            shutil.rmtree(folder, ignore_errors=True)


def _newest_change(folder: Path) -> float | None:
    """The newest modification time of `folder` and of everything in it (links not followed); None where any of it
    cannot be read."""
    try:
        newest = folder.lstat().st_mtime
        for root, dirs, files in os.walk(folder, onerror=_raise):
            for name in dirs + files:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    except OSError:
        return None
    return newest


def _raise(exc: OSError) -> None:
    raise exc


def _download_stem(name: str) -> str:
    """The photo's part of its results' download names: its file name without the suffix, cut to `NAME_BYTES`."""
    # not within a character; no dot first: a hidden file (Gradio refuses to serve one from its working folder)
    stem = visible_stem(name).encode()[:NAME_BYTES].decode(errors="ignore")
    return stem.lstrip(".") or "photo"  # (one of dots alone: 'photo')


def _upload_name(upload: dict) -> str | None:
    """The name of an upload (Gradio's record of it, a `FileData` dict) on the visitor's machine. Gradio's page
    names every webcam capture "image.png" (its toon downloaded as "image-toon.png"): a capture is named by the time
    it reached the server instead (the server's clock), "webcam-2026-12-03-061459.png". Gradio's page makes the
    capture's file without a type and sends that empty type with it; a file the visitor picks or drops is typed by
    their browser from its name ("image/png")."""
    name = upload.get("orig_name")
    if name != "image.png" or upload.get("mime_type") != "":
        return name
    try:
        taken = time.localtime(os.path.getmtime(upload["path"]))
    except OSError:  # deleted with Gradio's cache: its message names it (`ToonApp.check_photo`)
        return "webcam.png"
    return time.strftime("webcam-%Y-%m-%d-%H%M%S.png", taken)


def _discard(work: asyncio.Future) -> None:
    """Take the outcome of a cancelled event's work (its result, its stop, an error), which nobody will see."""
    if not work.cancelled():
        work.exception()


@dataclass
class Session:
    """One visitor's photo (`name`: its file name without the suffix, for the downloads; `upload`: the uploaded
    file): its faces (largest first), and the latents (with the mode that made each, and the projection steps of
    the modes that optimise) and the toons of the faces toonified so far. `note`: said before the status until the
    next toonify or pick (the page's word that a run stopped: a re-render shows the toon from before it)."""

    photo: Image.Image
    faces: list[AlignedFace]
    name: str = "photo"
    upload: str | None = None
    latents: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)
    toons: dict[int, Image.Image] = field(default_factory=dict)  # rendered with the blend at `swap_res`
    swap_res: int | None = None
    selected: int = 0
    note: str = ""


@dataclass
class View:
    """What the page shows for a session: every face (with a caption), the selected face's crop and toon,
    the photo with every toon pasted back, and a one-line status. `file_names`: what each result (`RESULTS`)
    downloads as: `<photo>-toon.png` (`<photo>-face2-toon.png` in a photo of several faces, `<photo>-8px-toon.png`
    and `-8px-pasted.png` at a swap resolution other than the app's first). `selected`: the index of the face shown,
    which the face picker marks. `started`: when the run that made the toon began (`time.perf_counter`, before the
    photo was read), None for a toon shown again or re-rendered; `timed_status` adds the time it took."""

    faces: list[tuple[Image.Image, str]]
    selected: int
    aligned: Image.Image
    toon: Image.Image
    pasted: Image.Image
    status: str
    file_names: dict[str, str]
    started: float | None = None

    def timed_status(self) -> str:
        """The status, and for a run the time from its start until now ("Toonified in 24.7 s."): the page says it once
        the results are saved. It left out reading the photo and saving the results: "6.9 s" of a 49 MP photo the
        page waited 8.5 s for (fortieth session's audit)."""
        if self.started is None:
            return self.status
        return f"{self.status} Toonified in {time.perf_counter() - self.started:.1f} s."


def check_settings(steps: int | None = None, max_steps: int = MAX_STEPS, max_pixels: int = MAX_PIXELS,
                   modes: Sequence[str] = ("optimize",)) -> None:
    """Raise ValueError for `ToonApp` settings that cannot work; cheap, so `toonlib app` checks before any download.
    `steps` None: each mode's own start (`pipeline.start_steps`), `DEFAULT_STEPS` for optimize; `modes`: the inversion
    modes offered, whose starts must lie within `max_steps`."""
    if steps is not None:
        check_count("steps", steps)  # steps="200" failed at "'<=' not supported" (forty-first session's audit)
    check_count("max_steps", max_steps)
    # The starts of the modes offered alone: `--invert e4e+optimize --max-steps 150` was refused for optimize's 200,
    # a start that app never shows (forty-fourth session's audit).
    starts = start_steps(steps, DEFAULT_STEPS)
    offered = [(starts[mode], mode) for mode in dict.fromkeys(modes) if mode in starts]
    if offered and max(offered)[0] > max_steps:
        start, mode = max(offered)
        whose = "" if steps is not None else f", {mode}'s own"
        raise ValueError(f"the steps slider's start ({start}{whose}) must be between 1 and its end ({max_steps}): "
                         "lower the start (--steps, steps=) or raise the end (--max-steps, max_steps=)")
    check_number("max_pixels (the largest photo taken, in pixels)", max_pixels, 1)


class ToonApp:
    """The web app's logic: toonify a visitor's photo, toonify another of its faces, re-blend.

    `toonifiers`: one `Toonifier` per inversion mode offered (its `invert`), the first one the default; they
    share the lock, so they may share models. `swap_res`: the swap resolution chosen first (px); the toon
    checkpoint must hold the toon model itself (like Toonify's file) for re-blending, else the app renders with
    its published blend and offers no choice; each toonifier's level and blend_width, as it was made, shape its
    re-blends (the status says them). `steps` / `max_steps`: the steps slider's start and end; `steps` given, the
    start in every mode that optimises; None (the default), each mode's own (`pipeline.start_steps`): optimize at
    `DEFAULT_STEPS` (200), e4e+optimize at 100, as the API runs it. The slider follows a change of mode unless the
    visitor moved it.
    `max_pixels`: the largest photo taken.
    """

    def __init__(self, toonifiers: Toonifier | Sequence[Toonifier], *, swap_res: int = DEFAULT_SWAP_RES,
                 steps: int | None = None, max_steps: int = MAX_STEPS, max_pixels: int = MAX_PIXELS) -> None:
        require_gradio()  # before the toon model is read (`set_blend`), as `toonlib app` says it (forty-second session)
        # None failed at "'NoneType' object is not iterable", a model's name at "'str' object has no attribute
        # 'invert'" (forty-first session's audit); bytes were walked (a name's first byte said, as an int) and a dict
        # by its keys (its Toonifiers, the values, unsaid; forty-second session's audit)
        if isinstance(toonifiers, Mapping):
            raise TypeError("toonifiers is a Toonifier or a list of them (one per inversion mode), got "
                            f"{type(toonifiers).__name__}: pass a list of Toonifiers, e.g. list(toonifiers.values())")
        single = (isinstance(toonifiers, (Toonifier, str, bytes, os.PathLike))
                  or not hasattr(toonifiers, "__iter__"))
        toonifiers = [toonifiers] if single else list(toonifiers)
        for item in toonifiers:
            if not isinstance(item, Toonifier):
                path = isinstance(item, (str, bytes, os.PathLike))
                name = os.fsdecode(item) if path else None
                setting = "invert" if name in INVERT_MODES else "toon"
                raise TypeError("toonifiers is a Toonifier or a list of them (one per inversion mode), got "
                                f"{type(item).__name__}" + (f" {item if isinstance(item, bytes) else name!r}: pass "
                                                            f"Toonifier({setting}={name!r})"
                                                            if path else ": pass Toonifier()"))
        self.toonifiers = {t.invert: t for t in toonifiers}
        if not toonifiers or len(self.toonifiers) < len(toonifiers):
            raise ValueError(f"give one Toonifier per inversion mode, got {[t.invert for t in toonifiers]}")
        self.modes = tuple(self.toonifiers)
        check_settings(steps, max_steps, max_pixels, self.modes)
        # Plain Python numbers: a NumPy integer went into the page's slider and choices, which Gradio's page could not
        # write as JSON (launch failed with Gradio's advice on proxies; forty-second session's audit).
        self.max_steps = int(max_steps)
        self.max_pixels = int(max_pixels) if float(max_pixels).is_integer() else float(max_pixels)
        self.steps = None if steps is None else int(steps)
        self._lock = threading.Lock()
        resolution = toonifiers[0].published_blend.img_resolution
        self.swap_resolutions = [2 ** k for k in range(2, int(math.log2(resolution)) + 1)]
        self.swap_res: int | None = self._first_swap_res(swap_res, resolution)
        # each toonifier's blend shape (level, blend_width), kept at every swap resolution the page sets
        # (`Toonifier.set_swap_res`): they were dropped, unsaid, and the caller's toonifier left without them
        # (forty-second session's audit)
        self._shapes = {t.invert: t.blend_setting[1:] for t in toonifiers}
        try:
            for toonifier in toonifiers:
                # reads the toon model from its checkpoint, once
                toonifier.set_swap_res(self.swap_res, self._shapes[toonifier.invert])
        except (CheckpointError, ValueError) as exc:  # a blended generator only, or one its codes do not fit: no
            # slider, and why (it went without a word, for every mode; thirty-third session's audit); swap_res itself
            # is checked above (a float, 16.0, was refused here, taken for a model that cannot be re-blended)
            warn(f"the app offers no swap-resolution slider, only the published blend: {exc}")
            self.swap_resolutions, self.swap_res = [], None

    def _first_swap_res(self, swap_res: object, resolution: int) -> int:
        """`swap_res` checked as `steps` is: a whole number among the model's resolutions (a float of one, a text or
        None failed at "'<' not supported" or went to the warning that the model cannot be re-blended, and a value
        above the model's was clamped unsaid; forty-second session's audit). The default alone is clamped to the
        model's resolution (a model under 32 px)."""
        check_setting(swap_res)  # a power of two >= 4, a whole number (a NumPy integer too)
        if swap_res == DEFAULT_SWAP_RES:
            swap_res = min(swap_res, resolution)
        if swap_res not in self.swap_resolutions:
            raise ValueError(f"swap_res must be one of {self.swap_resolutions} (the toon model is {resolution} px), "
                             f"got {int(swap_res)}")
        return int(swap_res)

    def warm_up(self) -> None:
        """Build the landmark detector and (for the modes that optimise) the perceptual metric now, so the first
        visitor does not wait for them and missing weights stop the server at its start, with their message."""
        first = next(iter(self.toonifiers.values()))
        if any(mode in OPTIMIZING_MODES for mode in self.modes):
            build_lpips(first.device)
        try:
            first.align(Image.new("RGB", (64, 64)))
        except NoFaceError:
            pass  # a blank image has no face; the detector is built

    # ------------------------------------------------------------------------------------------
    # Events

    def toonify(self, photo: str | Path | None, steps: int, swap_res: int | None, mode: str | None = None,
                name: str | None = None, *, callback: Callback | None = None,
                session: Session | None = None) -> tuple[Session, View]:
        """Find the faces of the uploaded file `photo` (called `name` on the visitor's machine) and toonify the
        largest one with inversion `mode` (default: the first). `callback(step, distance, w)` runs after each
        projection step (`projection.project`'s); an exception it raises stops the projection and is raised here.
        `session`: the visitor's; when it is this photo's, its selected face is toonified again with these settings,
        the other faces' toons kept, or, toonified so already, shown again at once (Toonify pressed twice)."""
        start = time.perf_counter()
        if photo is None:
            raise ValueError("no photo yet: upload one or take one with the webcam, then press Toonify")
        mode, steps, swap_res = self._check(steps, swap_res, mode)
        if session is not None and session.upload == str(photo):
            return session, self.pick(session, session.selected, steps, swap_res, mode, callback=callback)
        name = name or Path(photo).name
        image = self.read_photo(photo, name)
        with self._lock:  # messages name the photo: an error toast stays on the page until closed
            faces = self.toonifiers[mode].align(image, all_faces=True, name=repr(name))
            session = Session(photo=image, faces=faces, name=_download_stem(name), upload=str(photo))
            self._invert(session, 0, steps, mode, callback)
            view = self._view(session, swap_res)
        view.started = start
        return session, view

    def pick(self, session: Session | None, index: int, steps: int, swap_res: int | None,
             mode: str | None = None, *, callback: Callback | None = None) -> View:
        """Show face `index` of the session's photo, toonifying it first with `mode` (and `steps`) unless it is
        already toonified so, as the Toonify button does (`callback`: as `toonify`'s)."""
        if session is None:
            raise ValueError("no photo yet: upload one or take one with the webcam, then press Toonify")
        # before the session changes: a float passed the range check, became the face selected, and every later event
        # of the session failed at "list indices must be integers" (forty-second session's audit)
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index (the face, from 0) must be a whole number, got {index!r}")
        index = int(index)
        if not 0 <= index < len(session.faces):
            raise ValueError(f"there is no face {index + 1}: the photo has {len(session.faces)}")
        mode, steps, swap_res = self._check(steps, swap_res, mode)
        start = time.perf_counter()
        with self._lock:
            inverted = not self._inverted(session, index, mode, steps)  # a face toonified before in another mode
            if inverted:
                self._invert(session, index, steps, mode, callback)
            session.selected = index
            session.note = ""
            view = self._view(session, swap_res)
        view.started = start if inverted else None
        return view

    def reblend(self, session: Session | None, swap_res: int | None) -> View | None:
        """Re-render the session's toons with the toon model blended at `swap_res` (None without a session)."""
        swap_res = self._check_swap(swap_res)
        if session is None:
            return None
        with self._lock:
            return self._view(session, swap_res)

    # ------------------------------------------------------------------------------------------

    def read_photo(self, path: str | Path, name: str | None = None) -> Image.Image:
        """The uploaded file as an upright RGB photo, or the error that says what is wrong with it.

        A photo over `max_pixels` is refused from its header, before it is decoded (`check_photo`). Messages name the
        file `name` (default: its file name), the visitor's name for it, never the server's temporary path.
        """
        self.check_photo(path, name)
        return self._decode(str(path), name or Path(path).name)

    def check_photo(self, path: str | Path, name: str | None = None) -> str | None:
        """Raise `read_photo`'s error for a file that is no image or a photo over `max_pixels`, from its header
        (nothing is decoded: cheap enough for the upload itself); returns the header's format (Pillow's name)."""
        path, name = str(path), name or Path(path).name
        if not os.path.exists(path):  # read_image's "there is no such file" of the photo the page shows
            raise ImageReadError(f"the app no longer has {name!r} (it was restarted, or the upload is over an hour "
                                 "old: uploads are deleted after an hour or two): upload the photo again")
        try:
            with quiet_large_images(), Image.open(path) as header:
                width, height = header.size
                kind = header.format
        except Image.DecompressionBombError as exc:
            raise PhotoTooLargeError(f"{name!r} is {too_many_pixels(exc)}; the app takes photos up to "
                                     f"{self.max_pixels / 1e6:g} megapixels: use a smaller copy") from exc
        except (OSError, ValueError):  # not an image: read_image says why (it fails as fast, on the same header)
            self._decode(path, name)
            return None  # read by read_image after all: nothing to refuse
        if width * height > self.max_pixels:
            # digits enough to show it above the limit: 1250 x 1232 px was "(1.5 megapixels)" of a limit of 1.5
            size = width * height / 1e6
            digits = next(n for n in range(1, 7) if round(size, n) > self.max_pixels / 1e6 or n == 6)
            raise PhotoTooLargeError(f"{name!r} is {width} x {height} px ({size:.{digits}f} megapixels); "
                                     f"the app takes photos up to {self.max_pixels / 1e6:g} megapixels: "
                                     "use a smaller copy")
        return kind

    def preview(self, path: str | Path, name: str | None = None) -> Image.Image | None:
        """A copy of the uploaded photo for the page to show (at most `PREVIEW_PX` on its longer side), or None when
        browsers draw its format themselves; `read_photo`'s error for a file it refuses. HEIC and TIFF photos showed
        as an empty frame in Chromium and Firefox (they were toonified all the same)."""
        if self.check_photo(path, name) in BROWSER_FORMATS:
            return None
        image = self.read_photo(path, name)
        image.thumbnail((PREVIEW_PX, PREVIEW_PX))
        return image

    @staticmethod
    def _decode(path: str, name: str) -> Image.Image:
        try:
            return read_image(path)
        except ValueError as exc:
            raise type(exc)(str(exc).replace(path, name)) from exc

    def _check(self, steps: float, swap_res: int | str | None, mode: str | None) -> tuple[str, Any, int | None]:
        """Refuse settings the page cannot send (an API call can); returns the mode, the steps (a whole number, for a
        mode that optimises: `_whole_steps`) and the swap resolution."""
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {list(self.modes)}, got {mode!r}")
        if mode in OPTIMIZING_MODES:
            steps = self._whole_steps(steps)
        return mode, steps, self._check_swap(swap_res)

    def _whole_steps(self, steps: object) -> int:
        """`steps` rounded half up, as the page's steps box rounds them (`WHOLE_STEPS`), checked against the slider's
        ends: the server rounds what an API call or a Python caller sends as the page does (1.9 ran 1 step, "2" failed
        at "'<=' not supported", and the API's "abc", None or NaN at Gradio's anonymous error; forty-second session's
        audit)."""
        try:
            whole = None if isinstance(steps, bool) or not isinstance(steps, numbers.Real) else math.floor(steps + 0.5)
        except (ValueError, OverflowError):  # NaN, infinity
            whole = None
        if whole is None or not 1 <= whole <= self.max_steps:
            raise ValueError(f"steps must be between 1 and {self.max_steps}, got {steps!r}")
        return whole

    def _check_swap(self, swap_res: int | str | None) -> int | None:
        """The swap resolution `swap_res` as a number, refused where the page offers no such choice. Gradio's "Use via
        API" page shows the choice as text (`swap_res="32"`), which was refused as "must be one of [4, 8, 16, 32], got
        32" (thirty-second session's audit)."""
        if isinstance(swap_res, str) and swap_res.strip().isdecimal():
            swap_res = int(swap_res)
        allowed = self.swap_resolutions or [None]  # None: the published blend, when there is no toon model
        if swap_res not in allowed:
            raise ValueError(f"swap_res must be one of {allowed}, got {swap_res!r}")
        return swap_res

    def _invert(self, session: Session, index: int, steps: int, mode: str, callback: Callback | None) -> None:
        """Turn face `index` of the session's photo into a latent with `mode` (under the lock); the page reports
        the steps itself (through `callback`), in the visitor's words."""
        projection = dict(steps=int(steps), callback=callback) if mode in OPTIMIZING_MODES else {}
        result = self.toonifiers[mode](session.photo, face_index=index, progress=False, **projection)
        session.latents[index] = (mode, result.w)
        if projection:
            session.steps[index] = int(steps)
        else:  # an encoder's latent has no steps: a Stop said the ones of the face's earlier, optimised toon
            session.steps.pop(index, None)  # (forty-second session's audit)
        session.toons.pop(index, None)

    @staticmethod
    def _inverted(session: Session, index: int, mode: str, steps: int) -> bool:
        """Whether face `index` of the session is inverted with `mode` (and `steps`, for the modes that optimise)."""
        return (session.latents.get(index, (None,))[0] == mode
                and (mode not in OPTIMIZING_MODES or session.steps.get(index) == steps))

    def _view(self, session: Session, swap_res: int | None) -> View:
        """Render what is missing at `swap_res` and lay out the page (under the lock)."""
        if swap_res != session.swap_res:
            session.toons.clear()
            session.swap_res = swap_res
        for index, (mode, w) in session.latents.items():
            if index not in session.toons:
                toonifier = self.toonifiers[mode]  # its generator renders its mode's latents (psp-toonify's differ)
                toonifier.set_swap_res(swap_res, self._shapes[mode])
                session.toons[index] = toonifier.render(w)
        pasted = paste_faces(session.photo, [(toon, session.faces[i].quad) for i, toon in session.toons.items()])
        faces = [(face.image, f"face {i + 1}" + (" \N{CHECK MARK}" if i in session.latents else ""))  # ✓: toonified
                 for i, face in enumerate(session.faces)]
        count, left = len(session.faces), len(session.faces) - len(session.latents)
        # The face picker is above the status on a wide page and below it on a phone: no direction.
        more = f" ({left} more face{'s' * (left != 1)} to pick)" if left else ""
        mode, _ = session.latents[session.selected]  # the toon's own making, shown while it is (it was only timed)
        blend = f"the {blend_words(swap_res, *self._shapes[mode])}"
        status = (f"Face {session.selected + 1} of {count}{more}, " if count > 1 else "One face, ") + \
            f"rendered with {blend} ({self._how(mode, session.steps.get(session.selected))})."
        status = f"{session.note} {status}" if session.note else status
        face = session.name + (f"-face{session.selected + 1}" if count > 1 else "")  # the pasted photo: every face
        # A toon re-blended at another swap resolution than the app's first is named by it, as the command line names
        # a latent's re-blend (`<name>-16px-toon.png`): both toons downloaded as "hopper-toon.png" (forty-fourth
        # session's audit). The aligned face is the same at any.
        px = f"-{swap_res}px" if swap_res != self.swap_res else ""
        file_names = {kind: f"{session.name if kind == 'pasted' else face}{'' if kind == 'aligned' else px}-{kind}.png"
                      for kind in RESULTS}
        return View(faces=faces, selected=session.selected, aligned=session.faces[session.selected].image,
                    toon=session.toons[session.selected], pasted=pasted, status=status, file_names=file_names)

    @property
    def _starts(self) -> dict[str, int]:
        """Where the steps slider starts in each mode that optimises: without `steps`, e4e+optimize at its own 100
        (it started at 200, where the command line and the API run 100; forty-second session's audit)."""
        return start_steps(self.steps, DEFAULT_STEPS)

    def steps_for_mode(self, mode: str, steps: float, shown_for: str | None) -> tuple[float, str | None]:
        """The steps slider after the mode became `mode`: that mode's start (`pipeline.start_steps`) where the slider
        is at the start of `shown_for` (the mode whose start it shows), else as the visitor set it; and the mode whose
        start it shows then. `shown_for` None: the visitor set it (`steps_followed`), kept through changes of mode."""
        if mode not in self._starts or shown_for is None:  # no steps (the slider hidden, as it was), or the visitor's
            return steps, shown_for
        return (self._starts[mode] if steps == self._starts[shown_for] else steps), mode

    def steps_followed(self, mode: str, steps: float) -> str | None:
        """The mode whose start the steps slider shows once the visitor let go of it at `steps` in `mode`: `mode`
        where that is its start (as the reset button sets it), else None, the visitor's value. By its value alone, a
        visitor's 100 in optimize, kept through e4e+optimize whose start it is, was taken there for unmoved, and a
        change back put 200 in its place (forty-fourth session's audit)."""
        return mode if self._starts.get(mode) == steps else None

    def _how(self, mode: str, steps: int | None) -> str:
        """How a toon's latent was made, as the page names it: "optimise, 200 steps on cpu", "e4e on cuda"."""
        said = INVERT_LABELS.get(mode, mode).split(" (")[0]  # the mode as the page's choice names it: "optimise"
        how = f"{said}, {steps} step{'s' * (steps != 1)}" if mode in OPTIMIZING_MODES and steps else said
        return f"{how} on {self.toonifiers[mode].device.type}"

    # ------------------------------------------------------------------------------------------
    # The page

    def build(self) -> Any:
        """The Gradio page (a `gradio.Blocks`) with its events queued on the shared models."""
        gr = require_gradio()

        def not_toonified(exc: Exception) -> str:
            # The visitor's mistake, not the server's: said in the status line, which the next photo or toon replaces.
            # Raised as gr.Error, it marked every output with a red "Error" badge without a word; a toast as well
            # piled up ("Warning (3)") over the photo's Remove button on a phone, and outlived the photo.
            return f"**Not toonified:** {as_markdown_text(str(exc))}"

        def said(status: str) -> tuple:
            return (gr.skip(),) * (len(outputs) - 1) + (status,)  # all but the status unchanged

        def outputs_of(view: View, reblended: bool = False) -> tuple:
            # Result images as PNG files in Gradio's cache (deleted by the app: `_VisitorsFiles`), named for the
            # download: Gradio's own name for every image was "image.png". A re-blend leaves the faces and the aligned
            # face as they were: it sent them again. The pasted photo is shown from a copy of display size
            # (`shown_copy`) and downloaded from its own button, exact and whole.
            files = {kind: gr.skip() if reblended and kind == "aligned" else result_file(getattr(view, kind),
                                                                                         view.file_names[kind])
                     for kind in RESULTS}
            faces = gr.skip() if reblended else marked(view.selected, value=view.faces, visible=len(view.faces) > 1)
            width, height = view.pasted.size
            download = gr.update(value=files["pasted"], visible=True,
                                 label=f"Download the toon in the photo ({width} × {height} px, PNG)")
            shown = {**files, "pasted": shown_copy(view.pasted, files["pasted"])}
            return faces, *(shown[kind] for kind in RESULTS), download, view.timed_status()  # the results saved

        def result_file(image: Image.Image, name: str) -> str:
            # zlib's level 1: a 12 MP photo pasted back took 3.0 s to save at Gradio's level (6), within the shared
            # queue at every swap change, and takes 0.7 s, 8 % larger. In a folder named by the content, as Gradio's.
            data = io.BytesIO()
            image.save(data, "PNG", compress_level=1)
            path = Path(toon.GRADIO_CACHE) / hashlib.sha256(data.getbuffer()).hexdigest() / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write_path(path) as tmp:
                tmp.write_bytes(data.getbuffer())
            return files.add(str(path))

        def shown_copy(image: Image.Image, exact: str) -> str:
            # A photo larger than `PREVIEW_PX` is shown from a JPEG of that size beside its exact PNG: a 12 MP phone
            # photo pasted back went out as a 14 MB PNG at each Toonify, face click and swap change, to be drawn
            # 348 px wide on the phone (thirty-sixth session's audit); its copy is ~0.5 MB.
            if max(image.size) <= PREVIEW_PX:
                return exact
            copy = image.copy()
            copy.thumbnail((PREVIEW_PX, PREVIEW_PX))
            path = Path(exact).with_name(f"{Path(exact).stem}-shown.jpeg")
            with atomic_write_path(path) as tmp:
                copy.save(tmp, "JPEG", quality=90)
            return files.add(str(path))

        def marked(face: int, **update: Any) -> Any:
            # The face picker marks the face shown: a click marked the face clicked, and the mark stayed there when
            # that run was stopped, or a new photo's first face was shown.
            return gr.update(selected_index=face, **update)

        files = _VisitorsFiles()  # what the page writes (`launch` deletes them)
        # The projection's steps on the page, in the visitor's words (`after_step`): tqdm's label, "project w+",
        # meant nothing to them.
        steps_shown = gr.Progress()
        visitors = _Visitors()
        # A photo browsers cannot draw (`ToonApp.preview`) is shown as a JPEG copy: its path -> the upload's path and
        # name, which the events read (the page sends whichever it shows when Toonify is pressed).
        previews: dict[str, tuple[str, str | None]] = {}
        previews_lock = threading.Lock()  # the new-photo event runs in worker threads, unqueued

        def after_step(stop: threading.Event, progress: Any, steps: int, what: str) -> Callback:
            # The projection's callback: it ends the projection once `stop` is set, else shows the step done.
            def callback(step: int, distance: float, w: torch.Tensor) -> None:
                if stop.is_set():
                    raise _Stopped(f"stopped after step {step + 1} of {steps}")
                progress((step + 1, steps), desc=f"Fitting {what}", unit="steps")
            return callback

        async def in_worker(request: Any, photo: str | None, clicks: int | None, session: Session | None,
                            job: Callable[[threading.Event], tuple]) -> tuple:
            # `job(stop)` in a worker thread, for `photo` (the server's copy of the upload) unless the visitor's
            # page has replaced it or Stop came after the event's click (`_Visitors`). A new photo, Stop or a closed
            # tab sets `stop`: the projection ends after its current step, and the next event, waiting for the models
            # (the lock), starts then.
            stop = visitors.start(request.session_hash, photo, clicks)
            if stop is None:
                return gr.skip()  # nobody waits for its results; a stop said so already
            if stop in (STOPPED_WAITING, APP_STOPPED):
                return said(f"**{stop}**")
            work = asyncio.ensure_future(asyncio.to_thread(job, stop))  # in Gradio's context: its progress
            try:
                answer = await asyncio.shield(work)
                if visitors.app_stopped:  # its results' files are deleted as the server stops
                    return said(f"**{APP_STOPPED}**")
                # Work no stop reaches (an encoder's pass, a re-blend) ends as it was: its results dropped where a new
                # photo or a closed tab came meanwhile (they reached the page, the old photo's toon beside the new
                # photo; thirty-seventh session's audit). An API caller, who sends no new photo, gets them.
                return gr.skip() if stop.is_set() and not visitors.shows(request.session_hash, photo) else answer
            except asyncio.CancelledError:
                # Gradio's /cancel (an API client's `Job.cancel()`) cancels the task awaiting the thread, which the
                # thread never notices: `stop` ends its projection. Not waiting for that step, the event is answered
                # as one that changes nothing (re-raised, the page marked the outputs "Error").
                stop.set()
                work.add_done_callback(_discard)
                return gr.skip()
            except _Stopped as exc:  # Stop: said; a new photo or a closed tab: nobody waits for these results
                if visitors.app_stopped:
                    return said(f"**{APP_STOPPED}**")
                if not visitors.shows(request.session_hash, photo):
                    return gr.skip()
                status = f"**{str(exc).capitalize()}.**"
                if session is None:
                    return said(status)
                session.note = status  # the page's photo, its toon from before: a re-render says so too
                steps = session.steps.get(session.selected)  # none for a toon of a mode that does not optimise
                status += " The toon shown is the one from before" + (f" ({counted(steps, 'step')})." if steps else ".")
                return gr.skip(), marked(session.selected), *said(status)[2:]  # that face marked, not the one clicked
            except ERRORS as exc:
                return said(not_toonified(exc))
            finally:
                visitors.end(request.session_hash, stop)

        async def on_toonify(upload, steps, swap_res, mode, session, clicks, pressed_for, request,
                             progress=steps_shown):
            # Not preprocessed: `upload` is Gradio's record of the uploaded file, which `read_photo` checks itself
            # (Gradio's decoding would turn a broken or huge file into an anonymous error).
            photo, name = uploaded(upload)
            if pressed_for and pressed_photo(pressed_for) != photo:
                # Pressed for another photo (`PRESSED_FOR`), held by the page while an event ran and sent once it
                # ended, with the photo that replaced that one (or none): it toonified a photo nobody pressed
                # Toonify for, or said "no photo yet" after ✕. It ends with its photo, as one in the queue does.
                return gr.skip()

            def toonify(stop: threading.Event) -> tuple:
                # checked in the job: a step count that is no number is said in the status line (`ERRORS`)
                _, whole, _ = self._check(steps, swap_res, mode)
                new, view = self.toonify(photo, whole, swap_res, mode, name=name, session=session,
                                         callback=after_step(stop, progress, whole, "your photo"))
                return new, *outputs_of(view)
            return await in_worker(request, photo, clicks, session, toonify)

        async def on_pick(session, steps, swap_res, mode, clicks, event, request, progress=steps_shown):
            def pick(stop: threading.Event) -> tuple:
                _, whole, _ = self._check(steps, swap_res, mode)
                view = self.pick(session, event.index, whole, swap_res, mode,
                                 callback=after_step(stop, progress, whole, f"face {event.index + 1}"))
                return session, *outputs_of(view)
            return await in_worker(request, session and session.upload, clicks, session, pick)

        def on_stop(clicks, request):
            visitors.stop(request.session_hash, clicks)

        def on_close(request):
            # Gradio runs this when the visitor's tab closes (its heartbeat connection drops); it cancels nothing
            # itself, so the visitor's running projection is stopped here.
            visitors.close(request.session_hash)

        async def on_reblend(session, swap_res, request):
            return await in_worker(request, session and session.upload, None, session,
                                   lambda stop: reblend(session, swap_res))

        def reblend(session: Session | None, swap_res: int | None) -> tuple:
            view = self.reblend(session, swap_res)
            return gr.skip() if view is None else (session, *outputs_of(view, reblended=True))

        def uploaded(upload: dict | None) -> tuple[str | None, str | None]:
            # The server's copy of the visitor's photo and its name on their machine (the original of a preview).
            if upload is None:
                return None, None
            return previews.get(upload["path"], (upload["path"], _upload_name(upload)))

        def pressed_photo(pressed_for: str) -> str | None:
            # The server's copy of the photo a Toonify click was made for (`PRESSED_FOR`; a preview: its upload's).
            if pressed_for == NO_PHOTO:
                return None
            with previews_lock:
                return previews.get(pressed_for, (pressed_for,))[0]

        def keep_preview(shown: str, photo: str, name: str | None) -> None:
            # Copies Gradio has deleted (with its cache, an hour on) are forgotten as a new one comes: a server that
            # ran for weeks kept every one. Their uploads, older, are deleted too: a page still showing such a copy
            # is asked for the photo again either way (`ToonApp.check_photo`).
            with previews_lock:
                for gone in [path for path in previews if not os.path.exists(path)]:
                    del previews[gone]
                previews[shown] = (photo, name)

        def on_new_photo(upload, request):
            if upload is not None and upload["path"] in previews:  # the preview of the photo shown: not a new one
                return (gr.skip(),) * (len(outputs) + 1)
            photo, name = uploaded(upload)
            visitors.show(request.session_hash, photo)
            status, shown = "", gr.skip()
            if photo is not None:  # a file that is no image previewed as an empty frame, without a word
                try:
                    preview = self.preview(photo, name)
                except ERRORS as exc:
                    status = not_toonified(exc)
                else:
                    if preview is not None:  # HEIC, TIFF: an empty frame in Chromium and Firefox
                        # In a folder of its upload's own (named by the upload's path: Gradio's are by content and
                        # name), so two photos of the same pixels do not share a preview; deleted as the results are.
                        folder = Path(toon.GRADIO_CACHE) / hashlib.sha256(photo.encode()).hexdigest()
                        folder.mkdir(parents=True, exist_ok=True)
                        shown = files.add(str(folder / f"{_download_stem(name or Path(photo).name)}.jpeg"))
                        preview.save(shown, quality=90)
                        keep_preview(shown, photo, name)
            # the face picker and the pasted photo's download, each its own update (Gradio takes the value out of one)
            return (None, gr.update(value=None, visible=False), None, None, None, gr.update(value=None, visible=False),
                    status, shown)

        # Gradio finds these arguments by their types (`gr` is not in this module's globals for the annotations).
        on_pick.__annotations__["event"] = gr.SelectData
        for handler in (on_toonify, on_pick, on_stop, on_close, on_reblend, on_new_photo):
            handler.__annotations__["request"] = gr.Request

        # Results go out as PNG, exactly toonlib's pixels (Gradio's default, lossy WebP, blurs them), without
        # Gradio's Share button (it only said "Must be on Spaces to share"; the photo stays on this machine).
        result = dict(interactive=False, height=420, format="png", buttons=["download", "fullscreen"])
        optimizing = any(mode in OPTIMIZING_MODES for mode in self.modes)
        with gr.Blocks(title="Toonify yourself", analytics_enabled=False,
                       delete_cache=(DELETE_AFTER_S, DELETE_AFTER_S)) as page:
            gr.Markdown("# Toonify yourself\nUpload a photo of a face<span class='webcam'> (or take one with the "
                        "webcam)</span> and press **Toonify**. The photo stays on this machine and is deleted within "
                        f"two hours.<span class='no-webcam-note'> {NO_WEBCAM}</span>", elem_id="intro")
            session = gr.State(None)
            # The page's count of Toonify and face clicks, counted where they happen (`COUNT_CLICK`) and sent with
            # their events and with Stop, which ends the events of the clicks before it (`_Visitors`).
            clicks = gr.Number(0, precision=0, visible=False)
            # The photo of the last Toonify click (`PRESSED_FOR`), sent with its event.
            pressed_for = gr.Textbox("", visible=False)
            with gr.Row():
                with gr.Column():
                    photo = gr.Image(sources=["upload", "webcam"], type="filepath", label="Your photo",
                                     height=420, elem_id="photo")
                    faces = gr.Gallery(label="Faces in the photo: click one to toonify it", visible=False,
                                       columns=6, height="auto", allow_preview=False, buttons=[], elem_id="faces")
                    mode = gr.Radio([(INVERT_LABELS.get(m, m), m) for m in self.modes], value=self.modes[0],
                                    label="Inversion: how the face becomes a latent", visible=len(self.modes) > 1,
                                    elem_id="mode")
                    # the first mode that optimises: an app offering e4e, then e4e+optimize, showed optimize's 200
                    shown_for = next((mode for mode in self.modes if mode in self._starts), "optimize")
                    steps_mode = gr.State(shown_for)  # the mode whose start the slider shows (`steps_for_mode`)
                    steps = gr.Slider(1, self.max_steps, value=self._starts[shown_for], step=1,
                                      label="Optimisation steps",
                                      info="more steps: closer to the photo, slower", elem_id="steps",
                                      visible=self.modes[0] in OPTIMIZING_MODES)
                    with gr.Row():
                        button = gr.Button("Toonify", variant="primary", elem_id="toonify", scale=3)
                        # Ends a projection after its current step (offered with a mode that optimises; shown
                        # whatever the mode chosen now: one switched during a run hid it, and nothing could end it).
                        stop = gr.Button("Stop", variant="secondary", elem_id="stop", scale=1, min_width=80,
                                         visible=optimizing)
                with gr.Column():
                    toon = gr.Image(label="Toon", elem_id="toon", **result)
                    # In px, as the status line, --swap-res and the README say (a slider of exponents, 2^n px,
                    # refused a typed 32 as "greater than maximum value 5"); labelled by what it does to the toon,
                    # the term after it ("Swap resolution: the toon model's layers up to" meant nothing to visitors).
                    swap = gr.Radio([(f"{r} px", r) for r in self.swap_resolutions], value=self.swap_res,
                                    label="How cartoonish (swap resolution)",
                                    info="the toon model's layers up to this size: smaller, more like the photo; "
                                         "larger, more like a cartoon",
                                    visible=bool(self.swap_resolutions), elem_id="swap")
            status = gr.Markdown(elem_id="status")
            with gr.Row():  # stacked below 2 x 320 px, as the columns above (at 412 px: 164 px wide, side by side)
                aligned = gr.Image(label="Aligned face", elem_id="aligned", min_width=320, **{**result, "height": 360})
                with gr.Column(min_width=320):
                    # Its download is the button below (the image's own would save the copy shown, `shown_copy`).
                    pasted = gr.Image(label="Toon in the photo", elem_id="pasted",
                                      **{**result, "height": 360, "buttons": ["fullscreen"]})
                    pasted_download = gr.DownloadButton(visible=False, elem_id="pasted-download", size="sm")

            outputs = [session, faces, aligned, toon, pasted, pasted_download, status]
            # The progress shows over the results, not over the status line's last words (`CSS`: blank meanwhile).
            queued = dict(concurrency_id="models", concurrency_limit=1, show_progress_on=[faces, aligned, toon, pasted])
            # A click while the last one is answered (the old photo's run, stopping) runs after it: Gradio's default
            # for clicks dropped it. A second press of Toonify shows the first one's toon (`ToonApp.toonify`). The
            # click is counted first, by itself: the event that runs after another is sent again then (as Gradio
            # sends a held click), and a count sent again would pass for a click after Stop. The photo it is made for
            # is noted next (it waits for an upload in progress: a count that waited would miss a Stop meanwhile).
            button.click(None, clicks, clicks, js=COUNT_CLICK, api_name=False).then(
                None, photo, pressed_for, js=PRESSED_FOR, api_name=False).then(
                on_toonify, [photo, steps, swap, mode, session, clicks, pressed_for], outputs, preprocess=False,
                trigger_mode="always_last", api_name="toonify", **queued).then(None, js=SHOW_RESULT)
            # A face click needs its event's data (which a chained event lacks) and a held one is dropped: counted
            # by a listener of its own, first.
            faces.select(None, clicks, clicks, js=COUNT_CLICK, api_name=False)
            # Not an API endpoint: its face is the click's (Gradio's event data), which an API call cannot send.
            faces.select(on_pick, [session, steps, swap, mode, clicks], outputs, api_name=False,
                         **queued).then(None, js=SHOW_RESULT)
            # Not preprocessed: Gradio's check of the choices refused the swap resolution as the "Use via API" page
            # writes it, as text ("'16' is not in the list of choices"); `ToonApp.reblend` takes either.
            swap.change(on_reblend, [session, swap], outputs, trigger_mode="always_last", show_progress="minimal",
                        preprocess=False, api_name="reblend", **queued)
            # A new photo stops the old one's events, running or waiting (`_Visitors`): their results (the old
            # photo's toon) came in beside the new photo. No progress: the page is not busy with a toon.
            photo.change(on_new_photo, photo, [*outputs, photo], preprocess=False, queue=False, show_progress="hidden",
                         api_name=False).then(None, js=SHOW_RESULT)
            stop.click(on_stop, clicks, None, queue=False, api_name=False)
            def on_mode(chosen: str, value: float, shown_for: str) -> tuple[Any, str]:
                value, shown_for = self.steps_for_mode(chosen, value, shown_for)
                return gr.update(visible=chosen in OPTIMIZING_MODES, value=value), shown_for

            mode.change(on_mode, [mode, steps, steps_mode], [steps, steps_mode], queue=False, api_name=False)
            # The steps box shows what runs: a typed 2.5 stayed while 2 ran. When the box is left (Gradio clamps it
            # then), not at each key: an emptied box became 1 before the next digit. Gradio's reset button (↺) puts
            # back the value the slider was built with, the first mode's start, whatever the mode chosen since: 200 for
            # e4e+optimize, whose start is 100 (forty-fourth session's audit). Its press is noted (`PAGE_SCRIPT`), and
            # the release it sends sets the start of the mode chosen.
            starts = json.dumps({name: int(self._starts[name]) for name in self.modes if name in self._starts})
            def on_steps_set(value: float, chosen: str) -> str | None:
                return self.steps_followed(chosen, value)

            steps.release(None, [steps, mode], steps, api_name=False,
                          js=f"(n, mode) => window.toonlibStepsReset ? (window.toonlibStepsReset = false, "
                             f"{starts}[mode] ?? n) : Math.min({self.max_steps}, {WHOLE_STEPS})",
                          ).then(on_steps_set, [steps, mode], steps_mode, queue=False, api_name=False)
            page.unload(on_close)
        page.visitors_files, page.visitors = files, visitors
        return page


def require_gradio() -> Any:
    """The `gradio` module, or an ImportError that says how to install it: where it is not installed, or where it is
    older than `GRADIO_MIN` (an environment's Gradio 5, which `pip install toonlib` keeps)."""
    try:
        import gradio
    except ImportError as exc:
        raise ImportError(f"the web app needs Gradio ({exc}): {install_line('app')}") from exc
    version = str(getattr(gradio, "__version__", ""))
    parts = [int(part) for part in re.findall(r"\d+", version)[:len(GRADIO_MIN)]]
    if parts and tuple(parts + [0] * (len(GRADIO_MIN) - len(parts))) < GRADIO_MIN:  # one it cannot read: let through
        oldest = ".".join(map(str, GRADIO_MIN))
        raise ImportError(f"the web app needs Gradio {oldest} or newer, and this is Gradio {version}: "
                          f"{install_line('app', upgrade=True)}")
    return gradio


def launch(app: ToonApp, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True) -> Any:
    """Serve `app` on host:port (1-65535; None: Gradio's first free port from 7860); `share` also opens a public link
    through Gradio's tunnel (needs internet). The detector and the perceptual metric are built first
    (`ToonApp.warm_up`). With `block=False` it returns the running `gradio.Blocks` (stop it with `.close()`). Its
    visitors' uploads and results go to a folder of its own (`_AppFolder`), deleted when it stops."""
    require_gradio()  # before the warm-up's downloads (LPIPS' VGG16, 553 MB): said after them (forty-second session)
    check_port(host, port)
    app.warm_up()
    _reach_this_machine_without_proxy(host)
    page = _launched(app, host, port, share)
    if not block:
        return page
    # without internet Gradio says why above and leaves share_url None: it printed "... and None"
    public = (f" and {page.share_url}" if page.share_url else " only: --share made no public link (it needs internet; "
              "Gradio's lines above say why)") if share else ""
    try:  # the page's files are deleted even where this line cannot be written (a closed terminal)
        print(f"serving the app on {page.local_url}{_for_the_network(host, port or page.server_port)}{public} "
              "(Ctrl-C stops it)", flush=True)
        _wait_for_ctrl_c()  # Gradio's own wait ended quietly on Ctrl-C: the caller learns of it (exit status 130)
    finally:
        try:
            _say_the_app_stops(page)
        finally:  # a second Ctrl-C ends the wait, not the deletion
            page.close(verbose=False)
            _delete_visitors_files(page)
    return page


def _say_the_app_stops(page: Any, wait_s: float = STOPPING_S) -> None:
    """Before `page`'s server closes: stop its visitors' events (`_Visitors.stop_all`), and wait up to `wait_s` until
    Gradio has sent them their answers, `APP_STOPPED`, which the events that wait in its queue give at once. Closed
    with events under way, the server failed them, and their pages showed bare "Error" badges (forty-fourth session's
    audit). The pending answers are in Gradio's queue (internal: where a later Gradio lacks it, nothing is waited
    for)."""
    page.visitors.stop_all()
    pending = getattr(getattr(page, "_queue", None), "pending_event_ids_session", None)
    if not isinstance(pending, dict):
        return
    def answering() -> bool:  # an event's id is dropped once its answer is sent
        try:
            return any(list(pending.values()))
        except RuntimeError:  # changed by the server's thread meanwhile
            return True

    deadline = time.monotonic() + wait_s
    while answering() and time.monotonic() < deadline:
        time.sleep(0.05)


def _launched(app: ToonApp, host: str, port: int | None, share: bool) -> Any:
    """`app`'s page built and its server started (`launch`'s), its visitors' files in the process's app folder."""
    folder = _AppFolder.take()  # the visitors' files of this process's apps alone
    try:
        page = app.build()
    except BaseException:
        folder.release()
        raise
    page.app_folder = folder
    page.queue(default_concurrency_limit=1, max_size=64)
    # No run history (Gradio's "Runs" page, in recent Gradio 6 releases): a loaded run showed a photo whose faces and
    # swap choices did nothing (its session is not in a run), it kept the visitors' photos listed in the browser for the
    # next person at it, and it offered to send runs to a Hugging Face bucket (from this server).
    no_history = {"run_history": False} if "run_history" in inspect.signature(page.launch).parameters else {}
    try:
        page.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD, inbrowser=False,
                    prevent_thread_lock=True, quiet=True, css=CSS, js=PAGE_SCRIPT,
                    app_kwargs={"lifespan": _deleting(page)}, **no_history)  # Gradio's own lines name its options
    except BaseException as exc:
        # Gradio raises after its server has started (its check of the page failed): the server stayed, and a retry
        # on the port was told "another program uses that port" (forty-second session's audit)
        failure = _page_failure(page) if isinstance(exc, ValueError) else None
        page.close(verbose=False)
        _delete_visitors_files(page)
        if failure is not None:  # Gradio's advice, proxies and share=True, pointed the wrong way
            raise RuntimeError(failure) from exc
        raise
    return page


def _page_failure(page: Any) -> str | None:
    """Why Gradio's check of the page's server failed, where the server answered it with an error (the page itself
    failed to render, a bug the server's log shows); None where it did not answer (Gradio's own message stands)."""
    import urllib.error
    import urllib.request

    url = getattr(page, "local_url", None)
    if not url:
        return None
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # this machine: never through a proxy
    try:
        with no_proxy.open(url, timeout=10):
            return None  # it answered the page: the failure was elsewhere
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError):
        return None
    return (f"the app's page failed on its own server ({url} answered HTTP {code}), so the server was stopped: the "
            "traceback above says why")


def _deleting(page: Any) -> Callable:
    """The server's lifespan (FastAPI's, which Gradio's own deletion of its files wraps): while the server runs, every
    `DELETE_AFTER_S` the app's files (`page.visitors_files`) over that age are deleted, and the folders of apps that
    died meanwhile (`_remove_dead_apps_folders`), and every visitor's file (`_delete_visitors_files`) once it stops."""
    files, folder = page.visitors_files, getattr(page, "app_folder", None)

    @contextlib.asynccontextmanager
    async def lifespan(server: Any) -> Any:
        async def on_schedule() -> None:
            while True:
                await asyncio.sleep(DELETE_AFTER_S)
                await asyncio.to_thread(files.delete, DELETE_AFTER_S)
                if folder is not None:
                    await asyncio.to_thread(_remove_dead_apps_folders, folder.base)

        task = asyncio.ensure_future(on_schedule())
        try:
            yield
        finally:
            task.cancel()
            _delete_visitors_files(page)
    return lifespan


def _delete_visitors_files(page) -> None:
    """Delete the photos and results of every visitor now, as the page promises ("deleted within two hours"):
    Gradio's own deletion at close runs only once its server has stopped, which it waits 5 s for, and a visitor's run
    under way holds it open, so a Ctrl-C during a run left the photo on disk for good (thirty-eighth session's
    audit). The app's own files (`_VisitorsFiles`) first, then those in Gradio's sets (its function for them is
    internal: where a later Gradio lacks it, its own deletion stands), then the app's own folder (`_AppFolder`), with
    the folders Gradio made in it (one per upload, named by its content: empty, they piled up across runs;
    forty-second session's audit)."""
    page.visitors_files.delete()
    with contextlib.suppress(ImportError):
        from gradio.route_utils import delete_files_created_by_app

        delete_files_created_by_app(page, age=None)
    _AppFolder.release_of(page)


def _for_the_network(host: str, port: int) -> str:
    """The address other machines open, said after the local one when the app serves every network (`--host 0.0.0.0`
    printed only http://localhost:PORT/, of no use to them); '' for a host of this machine only or named."""
    if host != "0.0.0.0":  # IPv6 hosts are refused (`check_port`)
        return ""
    address = _address_on_network()
    if address is None:
        return f" and on this machine's network address, port {port}"
    return f" and, from other machines of its network, http://{address}:{port}/"


def _address_on_network() -> str | None:
    """This machine's IPv4 address on its network: the one its traffic leaves by (a UDP socket is connected, no packet
    sent); None without a network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith(("127.", "0.", "169.254.")) else address  # loopback, none, link-local


def _wait_for_ctrl_c() -> None:
    while True:
        time.sleep(1)


def check_port(host: str, port: int | None) -> None:
    """Raise OSError, saying what to do, when `port` cannot be served on `host`: checked before the models load, not
    after (Gradio's message then named its Python options). With `port` None (any free one) the host is checked all
    the same: a mistyped name waited ~8 minutes for Gradio's "Cannot find empty port in range: 7860-7959". Its
    messages name the options in both languages, `--port (port=)`, which the command line says as `--port`
    (`commands.for_command_line`)."""
    # ValueError for a port that is no port: 0 (Python's "any free one") served on a random port while Gradio checked
    # port 0, and "7950" failed at "'str' object cannot be interpreted as an integer" (forty-second session's audit).
    # The command line's --port is refused while its arguments are parsed, in the same range (`options.PORTS`).
    if port is not None:
        try:
            check_count("port", port, *PORTS)
        except ValueError as exc:
            raise ValueError(f"{exc}: for the first free one from 7860, leave it out (port=None)") from None
    if ":" in host:  # Gradio writes http://::1:7860, which its own check of the server cannot open
        raise OSError(f"cannot serve on {host}: the app takes an IPv4 address or a name as --host (host=), not an "
                      "IPv6 address; use --host (host=) 127.0.0.1 (this machine only) or 0.0.0.0 (every network it "
                      "is on)")
    with socket.socket(socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a port just freed is free
        try:
            probe.bind((host, int(port or 0)))
        except OSError as exc:
            if isinstance(exc, socket.gaierror):
                advice = f"no address is known for the name {host!r}: check --host (host=)"
            elif exc.errno == errno.EADDRNOTAVAIL:
                advice = (f"{host} is not an address of this machine; use --host (host=) 127.0.0.1 (this machine only) "
                          "or 0.0.0.0 (every network it is on)")
            elif exc.errno == errno.EACCES:
                advice = "ports below 1024 need an administrator; choose --port (port=) 7860 or another above 1024"
            else:
                advice = ("another program uses that port; choose another --port (port=), or leave it out (the first "
                          "free one from 7860)")
            where = host if port is None else f"{host}:{port}"
            raise OSError(f"cannot serve on {where} ({exc.strerror or exc}): {advice}") from None


def _reach_this_machine_without_proxy(host: str) -> None:
    """Put this machine (and `host`) on $no_proxy / $NO_PROXY for this process when a proxy is set.

    Once its server runs, Gradio checks it over HTTP with httpx, which sends even requests for 127.0.0.1 through
    $http_proxy unless $no_proxy exempts them: behind a proxy that cannot reach back here the app failed to
    start. Connections to this machine never need a proxy; the process's other requests keep theirs, and the
    exemptions already set stay (both spellings get the union: Python reads the lower-case one first)."""
    proxies = ("http_proxy", "https_proxy", "all_proxy")
    if not any(os.environ.get(name) or os.environ.get(name.upper()) for name in proxies):
        return
    entries = [entry.strip() for name in ("no_proxy", "NO_PROXY") for entry in os.environ.get(name, "").split(",")]
    local = ["localhost", "127.0.0.1", "::1"] + ([host] if host not in ("0.0.0.0", "::", "") else [])
    value = ",".join(dict.fromkeys(entry for entry in entries + local if entry))
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = value
