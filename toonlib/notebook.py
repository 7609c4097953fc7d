"""Helpers for Jupyter and Colab notebooks: where am I, which device, Drive, uploads, showing images.

IPython and google.colab are imported inside the functions that need them, never at import time.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import signal
import sys
import threading
import traceback
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
from PIL import Image

from . import runtime
from .checkpoints import CheckpointError, check_source, refuse_to_replace_model, split_network
from .devices import default_device
from .download import DRIVE_ROOT, use_drive_cache
from .files import atomic_write_path, user_path
from .images import image_file_format
from .messages import ToonlibWarning, check_flag, expected_errors, in_toonlib, install_line, interrupted
from .networks import Generator

__all__ = ["MissingExtra", "NotebookStop", "UploadCancelled", "UploadedFile", "brief_errors", "check_blend_pair",
           "check_blendable", "check_extras", "choose_data", "choose_photo", "default_device", "device_report",
           "display_size", "in_colab", "interrupt_requests", "load_blend_models", "load_model", "mount_drive",
           "naming_files", "notebook_parameter", "offer_download", "plot_losses", "prepare_landmarks", "prepare_lpips",
           "require_widgets", "run_path", "run_training", "save_uploads", "show", "show_run", "snapshot_viewer",
           "upload_images"]

#: What notebook 01's messages say to do about its training images.
DATA_HINT = ("Set data_path in the parameters cell to the folder or .zip file of your cartoon faces (a few hundred "
             'images), e.g. data_path = "toons" (a folder beside this notebook) or '
             'data_path = "~/Downloads/toons.zip", then run the notebook again.')
INTERRUPTED = "Interrupted: this cell stopped before it finished; run it again to start it over."
#: Under a NameError in a cell: the name may be one that a cell above sets.
RUN_CELLS_ABOVE = ("If a cell above this one sets {name!r}, run the cells above first (Colab: Runtime > Run before; "
                   "Jupyter: Run > Run All Above Selected Cell); after a restart of the runtime every cell runs again.")


#: A cell's stop where a cell above did not finish (it stopped with an error): its names are then set to None there,
#: and the work of the cell before would go on with the models of an earlier run, nothing said (`check_set_up`).
SET_UP_FIRST = ("{name} is None: the cell above that sets it did not finish. Fix what it said (a parameter, in the "
                "parameters cell) and run it again, then this cell.")


def check_set_up(**objects: object) -> None:
    """Stop the cell (`NotebookStop`, `SET_UP_FIRST`) when one of `objects` is None: the set-up cell that makes it
    sets it to None first, so that, failing, it leaves no models from before for the next cell to use."""
    for name, value in objects.items():
        if value is None:
            raise NotebookStop(SET_UP_FIRST.format(name=name))


#: How many times a set-up cell has run in this kernel (`brief_errors`, which each calls first).
_set_ups = 0
#: A panel made before the set-up cell ran again: it kept that cell's models before, and its Run and the save cell
#: used them under the new parameters, nothing said (thirty-ninth session's audit).
SET_UP_AGAIN = "The set-up cell ran again since this panel was made: run the photo cell again."
#: `SET_UP_AGAIN` in notebook 02's words: its explorer drew and saved the models of the set-up before under the new
#: base_model, and the saved file's record named the old base (fortieth session's audit).
EXPLORER_SET_UP_AGAIN = ("The set-up cell ran again since this explorer was made: run the cell that loads the models "
                         "and the explorer's cell again.")
#: The model file the set-up cell's last run loaded (`load_model`), with that run's `set_up_count()`; None before one.
_set_up_model: tuple[int, str] | None = None


def set_up_count() -> int:
    """How many set-up cells have run in this kernel so far (`brief_errors` counts them, and `load_blend_models`,
    02's second set-up cell): a panel records it when it is made, for `check_same_set_up`."""
    return _set_ups


def check_same_set_up(made_at: int, model: str | None = None, again: str = SET_UP_AGAIN) -> None:
    """Stop (`NotebookStop`, `again`) what a panel made at `set_up_count()` == `made_at` would do once a set-up
    cell ran since: it would go on with the models of the set-up before. `model`: the file the panel's result is of
    (`Generator.loaded_from`), which goes on where the set-up cell's last run loaded that same file (`load_model`):
    03's finished projection could not be saved after its set-up cell ran again unchanged, the only way out a
    projection again, up to an hour on a CPU (fortieth session's audit)."""
    if made_at == _set_ups or (model is not None and _set_up_model == (_set_ups, model)):
        return
    raise NotebookStop(again)


def check_unchanged(used: Mapping[str, object], **parameters: object) -> None:
    """Stop the cell (`NotebookStop`) when one of `parameters` differs from its value when the set-up cell ran (`used`,
    which that cell records): the cell would go on with what the set-up cell made of the old value. 01's training
    cell trained on the images of the data_path before, once it had been changed and the set-up cell skipped
    (thirty-second session's audit)."""
    changed = [name for name, value in parameters.items() if used.get(name) != value]
    if changed:
        now = ", ".join(f"{name} = {parameters[name]!r}" for name in changed)
        then = ", ".join(f"{name} = {used.get(name)!r}" for name in changed)
        raise NotebookStop(f"{now}: changed since the set-up cell ran (with {then}). Run the set-up cell again, then "
                           "this cell.")


class NotebookStop(RuntimeError):
    """Stops a notebook's cell (and Run All) with a message saying what to set or do; IPython shows the message
    alone, not a traceback through toonlib's code."""

    def _render_traceback_(self) -> list[str]:
        return str(self).splitlines()


class UploadCancelled(NotebookStop):
    """The user closed Colab's upload dialog without choosing a file (twice)."""


class MissingExtra(ImportError):
    """An optional extra the notebook needs is not installed: IPython shows its message (the install line) alone, as
    `NotebookStop`'s, also in a set-up cell before `brief_errors` is installed."""

    def _render_traceback_(self) -> list[str]:
        return str(self).splitlines()


def require_widgets():
    """The ipywidgets module (toonlib.widgets' import of it), or `MissingExtra` saying how to install the `notebook`
    extra: the set-up cells of 02-04 import toonlib.widgets first, and without ipywidgets they stopped in a
    ModuleNotFoundError traceback through widgets.py that said nothing of the extra (forty-second session's audit)."""
    try:
        import ipywidgets
    except ImportError as exc:
        raise MissingExtra(f"the notebooks' widgets need ipywidgets ({exc}): {install_line('notebook')} (JupyterLab 4 "
                           'and Notebook 7 need ipywidgets 8: pip install -U "ipywidgets>=8")') from exc
    return ipywidgets


@dataclass(frozen=True)
class UploadedFile:
    """A file the user uploaded, saved at `path`; `name` is the name they chose, which messages use (the saved copy
    may be `me-1.jpg` in `uploads/`). Path-like: whatever reads a path reads the saved file."""

    path: Path
    name: str

    def __fspath__(self) -> str:
        return os.fspath(self.path)


#: The parameters `brief_errors` was last given in this kernel: what `in_these_words` names (cells' errors and
#: warnings, the widgets' status lines).
_NOTEBOOK_PARAMETERS: dict[str, str] = {}


def in_these_words(text: str) -> str:
    """`in_notebook_words` with the notebook's parameters as `brief_errors` was given them, for a cell's error or
    warning and a widget's status line alike (the status lines said `--detector dlib (detector='dlib')` where the
    same error raised in a cell said `detector='dlib'`)."""
    return in_notebook_words(text, _NOTEBOOK_PARAMETERS)


def notebook_parameter(argument: str) -> str | None:
    """The notebook's parameter for toonlib's `argument` as its set-up cell gave them to `brief_errors` (03's and 04's
    `{"path": "output"}`: the file their save cell writes), None where it gave none: for a sentence that names the
    argument as a word of its own ("choose another path"), which `in_these_words` leaves alone."""
    return _NOTEBOOK_PARAMETERS.get(argument)


def brief_errors(parameters: Mapping[str, str] | None = None) -> None:
    """From now on in this IPython kernel, a fixable error that toonlib raises (`messages.expected_errors`: the
    command line's one-line errors), and a cell stopped with the kernel's interrupt inside toonlib, show as a short
    message instead of a traceback through toonlib's code; other errors (bugs, errors of the user's own code) keep
    their traceback, and a NameError in a cell (a cell run before the one above it that sets the name, or after the
    runtime restarted) gets a line saying how to run the cells above. Outside IPython it only counts (below).

    `parameters`: the notebook's parameter for a toonlib argument it is passed to (`{"invert": "inversion"}`); the
    short messages name the parameter (`inversion='x'`), not the argument the user never wrote.

    Every set-up cell calls it first, so it also counts the set-up cells run in this process (`set_up_count`,
    inside IPython or not), whose models a panel made before then no longer has (`check_same_set_up`)."""
    from IPython import get_ipython

    global _set_ups
    _set_ups += 1  # a set-up cell ran: the panels made before it are of its models before (`check_same_set_up`)
    shell = get_ipython()
    if shell is not None:
        _NOTEBOOK_PARAMETERS.clear()  # the set-up cell run again: its parameters now
        _NOTEBOOK_PARAMETERS.update(parameters or {})
        shell.set_custom_exc(expected_errors() + (KeyboardInterrupt, NameError), _show_briefly)
        if not isinstance(warnings.showwarning, _BriefWarnings):
            warnings.showwarning = _BriefWarnings(warnings.showwarning)


class _BriefWarnings:
    """`warnings.showwarning` of `brief_errors`: toonlib's warnings (`messages.ToonlibWarning`) as one line, "warning:
    <message>" in the notebook's words (they showed the kernel's temporary file name and the cell's source line);
    others as before."""

    def __init__(self, show) -> None:
        self.show = show

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ToonlibWarning):
            print(f"warning: {in_these_words(str(message))}",
                  file=sys.stderr if file is None else file)
        else:
            self.show(message, category, filename, lineno, file, line)


def _show_briefly(shell, etype: type[BaseException], value: BaseException, tb, tb_offset: int | None = None) -> None:
    """IPython's custom exception handler of `brief_errors`."""
    ours = [in_toonlib(frame.f_code.co_filename) for frame, _ in traceback.walk_tb(tb)]
    if interrupted(value) and any(ours):
        lines = [INTERRUPTED]
    elif isinstance(value, expected_errors()) and ours and ours[-1]:  # raised on purpose: a message for the user
        lines = in_these_words(str(value)).splitlines() or [etype.__name__]
    elif isinstance(value, NameError) and _in_cell(shell, tb):
        lines = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        lines.append(RUN_CELLS_ABOVE.format(name=value.name))
    else:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return
    shell._showtraceback(etype, value, lines)


def check_models(*, training: bool = False, **models: str) -> None:
    """Check the notebook's model parameters (`check_models(base_model=base_model)`) before anything downloads: a name
    that is no registry model or a path that names no file raises the loader's error prefixed with the parameter
    (`base_model = 'nope': unknown model ...`); 02 loads two models in one cell, and its error named neither. A local
    file that is no checkpoint (a photo, a latent) is said so too, from its first bytes (`_check_model_file`), and with
    `training` (01, which fine-tunes its base with the base's discriminator) a toonlib file without D."""
    for parameter, value in models.items():
        check_source(value, f"{parameter} = {value!r}")
        _check_model_file(parameter, value, training)


def _check_model_file(parameter: str, value: str, training: bool = False) -> None:
    """`check_models`' look into a local file, reading no weights: `CheckpointError` naming `parameter` where its first
    bytes are no checkpoint's (`read_checkpoint` says what it is: "a JPEG image, not a checkpoint"), or, `training`,
    where it is a toonlib file that holds no discriminator (`checkpoints.holds_discriminator`). 01's set-up cell
    passed a photo or a G-only file as base_model, and the training cell failed on it naming no parameter (forty-first
    session's audit); other formats' networks are known once read, in the training cell."""
    from .checkpoints import holds_discriminator, read_checkpoint
    from .files import is_url, looks_like_checkpoint

    file = split_network(value)[0]
    if is_url(str(file)) or not user_path(file).is_file():  # a registry name or an address: checked when downloaded
        return
    path = user_path(file)
    with open(path, "rb") as f:
        head = f.read(512)
    with _naming(parameter, value):
        if not looks_like_checkpoint(head):
            read_checkpoint(path)  # raises what the file is; it reads no more of a file that is no checkpoint
        if training and holds_discriminator(path) is False:
            raise CheckpointError("it holds a generator alone, no discriminator (D), which fine-tuning trains "
                                  "together with the generator (a blend or a generator saved on its own has none): "
                                  f"set {parameter} in the parameters cell to a model with D, e.g. 'ffhq-256-noaug'")


def check_extras(detector: str = "auto", video: bool = False) -> None:
    """The optional packages the notebook's settings need, checked in its set-up cell before anything downloads:
    `detector` 'dlib' needs dlib and its landmark model (`align.require_detector`), `video` (03's panel draws one
    each Run) imageio-ffmpeg (`projection.require_video_writer`, as `toonlib project --video`); each raises with the
    install line. 03's Run projected for minutes, then showed a traceback for want of imageio-ffmpeg, and with dlib
    missing 03 and 04 said so after LPIPS' VGG16 (553 MB) had downloaded (forty-second session's audit)."""
    from .align import require_detector
    from .projection import require_video_writer

    require_detector(detector)
    if video:
        require_video_writer()


def prepare_lpips(device: torch.device | str | None = None, inversion: str = "optimize") -> None:
    """LPIPS (the projection loss) built now on `device` (default: `default_device()`) where the `inversion` mode
    optimises (`options.OPTIMIZING_MODES`; 03 projects), for the set-up cell: its VGG16 weights (553 MB) download
    there the first time, with the download bar in that cell, and an offline failure is said before a photo is
    chosen; the Run reuses it (`losses.build_lpips`; the command line fetches them with the models,
    `commands._lpips_weights`). They were fetched in the Run, whose status said "finding the face..." through the
    download, its bar in JupyterLab's log (fortieth session's audit)."""
    from .losses import build_lpips
    from .options import OPTIMIZING_MODES

    if inversion not in OPTIMIZING_MODES:
        return
    device = torch.device(default_device() if device is None else device)
    if device.type == "cuda" and device.index is None:  # as a projection names it (its generator's): built once
        device = torch.device("cuda", torch.cuda.current_device())
    build_lpips(device)


def prepare_landmarks(detector: str = "auto", device: torch.device | str | None = None) -> None:
    """The face landmarker of `detector` built now on `device` (default: `default_device()`), for 03's and 04's set-up
    cells: face-alignment's weights (its S3FD face detector and 2D-FAN-4 landmarks) download there the first time,
    with their bar in that cell; offline, 'face_alignment' stops that cell saying what to fetch, and 'auto' says there
    that it takes dlib's landmarks instead. The Run reuses it (`align._get_backend` keeps one per detector and device).
    The first Run fetched them under "finding the face...", the bar and the fallback's warning in JupyterLab's log
    (forty-first session's audit; as LPIPS', `prepare_lpips`)."""
    from .align import _get_backend

    _get_backend(detector, str(default_device() if device is None else device))


def check_blend_pair(base_model: str, toon_model: str) -> None:
    """Notebook 02's set-up check of two registry models (`toonlib models`) before they download: `NotebookStop`
    where they are of different resolutions, which no blend takes (02 offers FFHQ 256 and 512 beside Toonify's 1024
    px toon: both models downloaded, hundreds of MB, before the loading cell refused the pair; fortieth session's
    audit). A path, a URL or a blend's network named ("toon.pkl (G)") is compared once loaded (`check_blendable`),
    and so is a pair of one resolution whose lineage differs (`blending.check_lineage` warns of it)."""
    from . import models

    base, toon = (models.MODELS.get(split_network(name)[0]) if isinstance(name, str) else None
                  for name in (base_model, toon_model))
    if base is None or toon is None or None in (base.resolution, toon.resolution):
        return
    if base.resolution != toon.resolution:
        raise NotebookStop(_cannot_blend(toon_model, toon.resolution, base_model, base.resolution, _parent(toon_model)))


def _parent(toon_model: object) -> str | None:
    """The base a registry toon model was fine-tuned from, quoted (its lineage), for `_cannot_blend`; else None."""
    from . import models

    info = models.MODELS.get(split_network(toon_model)[0]) if isinstance(toon_model, str) else None
    return f"{info.lineage!r}" if info is not None and info.lineage else None


def _cannot_blend(toon_model: str, toon_px: int, base_model: str, base_px: int, parent: str | None = None,
                  verb: str = "cannot be blended with") -> str:
    """What 02 says of a toon and a base that cannot be blended (04: `verb` "cannot toonify the latents of"): each
    with its resolution, and the model to set as the base (`parent`, where the registry names it)."""
    fix = (f"it was fine-tuned from {parent}. Set base_model in the parameters cell to {parent}" if parent else
           "it was fine-tuned from another model. Set base_model in the parameters cell to the model the toon was "
           "fine-tuned from (notebook 01's last cell names it)")
    return (f"toon_model = {str(toon_model)!r} ({toon_px} px) {verb} base_model = {str(base_model)!r} "
            f"({base_px} px): {fix}, then run the cells again.")


@contextlib.contextmanager
def _naming(parameter: str, value: object) -> Iterator[None]:
    """A `CheckpointError` of the block (a file that is no checkpoint: a photo, a latent given as a model) said with
    the notebook's parameter that named the file: `check_models` names only the names and paths that are no file
    (fortieth session's audit: "photos/hopper.jpg is a JPEG image, not a checkpoint" named no parameter)."""
    try:
        yield
    except CheckpointError as exc:
        raise CheckpointError(f"{parameter} = {str(value)!r}: {exc}") from None


@contextlib.contextmanager
def naming_files(**parameters: object) -> Iterator[None]:
    """`_naming` for a block that reads the files of several parameters (04's set-up cell: `Toonifier` reads
    base_model's and toon_model's): a `CheckpointError` that names one of their files first (a file that is no
    checkpoint, "photos/me.jpg is a JPEG image, ...") is said with that parameter, as 02's and 03's loaders say theirs
    (forty-first session's audit: 04's named none); a toon model and a base of other resolutions
    (`pipeline.BaseMismatchError`) as 02 says them, naming base_model (04 said to see `toonlib models`, a command;
    forty-second session's audit); others as they are."""
    from .pipeline import BaseMismatchError

    try:
        yield
    except BaseMismatchError as exc:
        if not {"base_model", "toon_model"} <= set(parameters):
            raise
        toon_model, base_model = parameters["toon_model"], parameters["base_model"]
        raise NotebookStop(_cannot_blend(toon_model, exc.toon_px, base_model, exc.base_px, _parent(toon_model),
                                         verb="cannot toonify the latents of")) from None
    except CheckpointError as exc:
        named = [name for name, value in parameters.items() if _names_file(str(exc), value)]
        if not named:
            raise
        with _naming(named[0], parameters[named[0]]):  # said as `_naming` says it
            raise


def _names_file(message: str, value: object) -> bool:
    """Whether `message` starts with the local file that `value` (a model parameter's path) names, as the checkpoint
    readers name it."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    try:
        path = user_path(split_network(value)[0])
    except ValueError:  # an empty path: no file
        return False
    return message.startswith(f"{path} ")


def load_model(model: str, device: torch.device | str | None = None, parameter: str = "model") -> Generator:
    """Notebook 03's model, `load_generator(model, device=device)`, a file that is no checkpoint said naming
    `parameter`; recorded as the model of this set-up, for `check_same_set_up(model=)`: a panel's result of this
    model stays savable after the set-up cell ran again with it."""
    from .checkpoints import load_generator

    global _set_up_model
    with _naming(parameter, model):
        G = load_generator(model, device=device)
    _set_up_model = (_set_ups, G.loaded_from) if G.loaded_from is not None else None
    return G


#: An option in the command line's and Python's words, and Python's alone: (pattern, replacement) for `re.sub`.
_NOTEBOOK_WORDS = (
    (r"--[\w-]+ ([^\s(),;:]+) \((\w+)=\)", r"\2=\1"),  # '--resume runs/x.pkl (resume=)'
    (r"--[\w-]+ [^\s(),;:]+ \((\w+=[^()]+)\)", r"\1"),  # TrainConfig's '--resolution 64 (resolution=64)'
    # the option's value and Python's form of it: "(--toon-network G_ema; in Python 'FILE (G_ema)')" of a blend given as
    # 02's toon_model, said as "(toon_network='G_ema')", the parameter a notebook has for it (fortieth session's audit)
    (r"\(--([\w-]+) ([^\s(),;:]+); in Python '[^']*'\)", lambda m: f"({m[1].replace('-', '_')}={m[2]!r})"),
)
#: An option named alone in both languages: '--kimg (kimg=)', a resumed run's changed '--seed (seed=): 0 -> 1'; said
#: as the notebook's parameter where it has one: 01's refused resume said "resume: 'base.pt' -> 'base2.pt'", an
#: argument no cell shows, for base_model (forty-third session's audit).
_OPTION_ALONE = r"--[\w-]+ \((\w+)=\)"
#: An option in both languages in parentheses: '(--run-dir, run_dir=)', '(or --cache-dir, cache_dir=)'; said as
#: '(run_dir)', the notebook's parameter where it has one. Only this form: a bare '(word)' may be a file's name (01's
#: "runs holds 4 files (e.g. resume)" named the folder 'resume' base_model; thirty-ninth session's audit).
_BOTH_IN_PARENTHESES = r"\(((?:or )?)--[\w-]+, (\w+)=\)"


def in_notebook_words(text: str, parameters: Mapping[str, str]) -> str:
    """`text` naming the notebook's `parameters` for the toonlib arguments they are passed to: `base='x'` as
    `base_model='x'`, a message's first word `which (the generator ...) must be` as `toon_network (...) must be`.
    Other words are left alone (the prose's "the base model"). An option named in both languages keeps Python's
    words alone (`--kimg (kimg=)` as `kimg`, `--resume x (resume=)` as `resume=x`, `(--run-dir, run_dir=)` as
    `(run_dir)`): a notebook has no command line."""
    for pattern, replacement in _NOTEBOOK_WORDS:
        text = re.sub(pattern, replacement, text)
    text = re.sub(_OPTION_ALONE, lambda match: parameters.get(match[1], match[1]), text)
    text = re.sub(_BOTH_IN_PARENTHESES, lambda match: f"({match[1]}{parameters.get(match[2], match[2])})", text)
    for argument, parameter in parameters.items():
        if argument in _DERIVED:  # its value is no parameter's: run_dir='runs/toon' stays, 'a new run_dir' is said
            text = re.sub(rf"(?<![\w./-]){re.escape(argument)}(?![\w/=]|\.\w)", parameter, text)  # not in a path
            continue
        text = re.sub(rf"(?<![\w.-]){re.escape(argument)}=", f"{parameter}=", text)
        text = re.sub(rf"^{re.escape(argument)}(?= \(| must )", parameter, text, flags=re.MULTILINE)
    return text


#: Arguments a notebook derives from a parameter (01's run folder, runs/<run_name>): where a message names the
#: argument, the notebook's words name the parameter, but a value it shows (run_dir='runs/toon') stays the argument's.
_DERIVED = ("run_dir",)


class StopRequests(threading.Event):
    """The event `interrupt_requests` yields, set once the block's stop was requested. `stop()` requests it from
    another thread, as the kernel's interrupt does (the photo cell run again stops the Run of the panel it replaces)."""

    def __init__(self) -> None:
        super().__init__()
        self._stop: Callable[[], bool] = lambda: False

    def stop(self) -> bool:
        """Stop the block with KeyboardInterrupt where it is; False where nothing was stopped (the block ended, a stop
        was requested already, or it runs in the main thread, which a cell's code could not run beside)."""
        return self._stop()


@contextlib.contextmanager
def interrupt_requests() -> Iterator[StopRequests]:
    """While the block runs, the kernel's interrupt (Kernel > Interrupt) stops it with KeyboardInterrupt, as it stops a
    cell, wherever it is: a model's loading or download, the face's alignment, an encoder's pass, a projection step.
    The event yielded is set too; its `stop()` does the same from another thread.

    A widget callback that runs in the kernel's main thread (a classic front end) is interrupted with
    KeyboardInterrupt as a cell is, and the event stays clear. JupyterLab 4.6 sends widget messages to a subshell,
    which ipykernel 7 runs in a thread of its own: the interrupt's SIGINT reaches only the main thread, which ignores
    it while no cell runs, so nothing would stop the callback. There, for the duration of the block, the main thread
    handles SIGINT by setting the event and raising KeyboardInterrupt in the block's thread (once; it lands at the
    next Python instruction there, after a C call under way returns); it is installed and restored from the kernel's
    main event loop, where `signal.signal` may be called. One that has not landed when the block ends is withdrawn.
    Outside ipykernel only `stop()` sets it."""
    requested = StopRequests()
    if threading.current_thread() is threading.main_thread():
        yield requested
        return
    loop = _main_loop()
    thread, lock, running = threading.get_ident(), threading.Lock(), [True]

    def stop() -> bool:
        with lock:
            if not running[0] or requested.is_set():
                return False
            requested.set()
            _raise_in(thread, KeyboardInterrupt)
            return True

    def handler(signum: int, frame) -> None:
        stop()

    saved: list = []

    def install() -> None:
        saved.append(signal.signal(signal.SIGINT, handler))

    def restore() -> None:
        if saved and signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, saved.pop())

    requested._stop = stop
    if loop is not None:
        loop.add_callback(install)
    try:
        yield requested
    finally:
        if loop is not None:
            loop.add_callback(restore)  # first: whatever lands below, the kernel's own handler comes back
        with lock:
            running[0] = False
            if requested.is_set():
                _raise_in(thread, None)  # withdraw it if it has not landed: it would stop the kernel's subshell


def _raise_in(thread: int, exception: type[BaseException] | None) -> None:
    """Raise `exception` in the thread of id `thread` at its next Python instruction; None withdraws one pending."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                               None if exception is None else ctypes.py_object(exception))


def _main_loop():
    """The event loop of the IPython kernel's main thread (its `io_loop`), None outside ipykernel."""
    from IPython import get_ipython

    return getattr(getattr(get_ipython(), "kernel", None), "io_loop", None)


def _in_cell(shell, tb) -> bool:
    """Whether the innermost frame of `tb` runs the user's code: a cell's, or a function defined in a cell."""
    frames = [frame for frame, _ in traceback.walk_tb(tb)]
    return bool(frames) and frames[-1].f_globals is shell.user_ns


def in_colab() -> bool:
    """True inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


#: What device_report(training=True) adds on the CPU (notebook 01).
CPU_TRAINING = ("Training on the CPU is impractical: even tiny test models take minutes per kimg, real ones take "
                "days. Train on a GPU.")


def device_report(print_it: bool = True, training: bool = False, blending: bool = False) -> str:
    """One paragraph on the runtime: Python, torch, the device toonlib will use, and what to expect: on the CPU, of a
    projection and the e4e mode, or with `training` (notebook 01) of training instead: impractical there; with
    `blending` (notebook 02, which projects nothing), of neither."""
    lines = [f"Python {platform.python_version()}, torch {torch.__version__}"]
    if default_device().type == "cuda":
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.1f} GiB: toonlib will use CUDA.")
    else:
        cpu = torch.device("cpu")
        speed = ("bfloat16 in hardware: a projection step at 1024 px takes about 0.7 s, 500 steps ~6 minutes"
                 if runtime.native_bf16(cpu) else
                 "float32, no bfloat16 in hardware: a projection step at 1024 px takes 3-11 s, 500 steps 25 minutes "
                 "to 1.5 hours")
        # projection's and e4e's times are no concern of notebook 01's, which trains (thirty-ninth session's audit),
        # or 02's, which blends (forty-second session's audit)
        expect = "" if training or blending else f", {speed}; the e4e inversion mode takes seconds"
        lines.append(f"No GPU: toonlib will run on the CPU ({os.cpu_count()} cores{expect}). In Colab choose Runtime > "
                     "Change runtime type > GPU.")
        if training:
            lines.append(CPU_TRAINING)
    report = "\n".join(lines)
    if print_it:
        print(report)
    return report


def mount_drive(folder: str = "toonlib", use: bool = True) -> Path | None:
    """Mount Google Drive in Colab and return `MyDrive/<folder>` (created); None outside Colab.

    Call it before anything downloads: with Drive mounted, `toonlib.download.cache_dir()` is on Drive
    and a reconnected runtime finds the models there. `use=False` skips Drive on purpose; a declined
    or failed mount is not an error either: both print one line and return None (local cache).
    """
    try:  # "no" mounted Drive, as any value but False did (forty-third session's audit); a ValueError, which a
        check_flag("use_drive", use)  # notebook shows as its message alone, as TrainConfig says freeze_mapping's
    except TypeError as exc:
        raise ValueError(f"{exc}: set it in the parameters cell") from None
    if not in_colab():
        return None
    use_drive_cache(use)  # mounted before (an earlier run, the Files pane), Drive took the downloads all the same
    if not use:
        mounted = " (Drive stays mounted; nothing is saved to it)" if DRIVE_ROOT.exists() else ""
        print(f"Google Drive skipped (use_drive = False): models are cached on this runtime only{mounted}.")
        return None
    from google.colab import drive

    if not DRIVE_ROOT.exists():
        try:
            drive.mount(str(DRIVE_ROOT.parent))
        except Exception as exc:  # Colab raises MessageError when declined, ValueError on a timeout
            print(f"Google Drive not mounted ({exc}): models are cached on this runtime only and are downloaded "
                  "again after a reconnect.")
            return None
    path = DRIVE_ROOT / folder
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_path(name: str | os.PathLike, drive: Path | None, parameter: str = "output", image: bool = False,
                suffix: str | None = None, models: Mapping[str, object] | None = None) -> Path:
    """Where a notebook saves the file its `parameter` names: in the Drive folder `mount_drive` returned, else in the
    working folder. An empty name is refused naming the parameter (it named the folder, and the save failed inside),
    and so is a value that is no text (None), a path that can name no file (a folder, '.', one under a file:
    `files.check_file_path`; it was said without the parameter, fortieth session's audit); with `image`, a name whose
    suffix is no image format, and with `suffix` ('.npz', '.safetensors'), a name with another suffix (a set-up cell
    checks it before the minutes of work whose result it names: 03's latent was written over a model file or the
    photo, fortieth session's audit; 02's blend over the photo, forty-second session's audit); with `models` ({"toon":
    toon_model, ...}), a path that is one of those model files (`checkpoints.refuse_to_replace_model`: 02's save refused
    it only after the models had loaded and the explorer had drawn)."""
    from .files import check_file_path

    if not isinstance(name, (str, os.PathLike)):  # `output = None` was a TypeError traceback through this function,
        # naming no parameter (forty-second session's audit): refused by name, as `run_path` refuses run_name
        example = f', e.g. {parameter} = "result{suffix or ".png"}"' if suffix or image else ""
        raise ValueError(f"{parameter} = {name!r}: set it in the parameters cell to the name of the file to save, in "
                         f"quotes{example}")
    if not os.fspath(name).strip():
        raise ValueError(f"{parameter} is empty: set it in the parameters cell to the name of the file to save")
    path = (drive or Path(".")) / name
    try:
        check_file_path(user_path(path))
    except OSError as exc:
        raise type(exc)(f"{parameter} = {os.fspath(name)!r}: {exc}") from None
    if image:
        try:
            image_file_format(name)
        except ValueError as exc:
            raise ValueError(f"{parameter} in the parameters cell: {exc}") from None
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"{parameter} = {os.fspath(name)!r}: it is saved as a {suffix} file (tools pick their reader "
                         f"by the suffix); set {parameter} in the parameters cell to "
                         f"{os.fspath(Path(name).with_suffix(suffix))!r}")
    if models:
        refuse_to_replace_model(path, *((source, option) for option, source in models.items()
                                        if isinstance(source, (str, os.PathLike))), named=f"{parameter} =")
    return path


def run_path(run_name: str, drive: Path | None) -> Path:
    """Notebook 01's run folder, runs/<run_name>: in the Drive folder `mount_drive` returned, else in the working
    folder. An empty name is refused naming the parameter (the run's files went into runs/ itself, among the other
    runs' folders; thirty-ninth session's audit), and so is a name with a folder in it ('a/b', '..'), and a value that
    is no text (`run_name = None` was a TypeError traceback; forty-first session's audit)."""
    name = os.fspath(run_name) if isinstance(run_name, (str, os.PathLike)) else None
    if not isinstance(name, str):
        raise ValueError(f"run_name = {run_name!r}: set it in the parameters cell to a name for this run, in quotes "
                         "(its files go in runs/<run_name>), e.g. run_name = \"toon\"")
    if not name.strip():
        raise ValueError("run_name is empty: set it in the parameters cell to a name for this run (its files go in "
                         "runs/<run_name>), e.g. run_name = \"toon\"")
    if Path(name).name != name or name == "..":
        raise ValueError(f"run_name = {name!r} is a path: set it in the parameters cell to a name alone, without "
                         "'/' (the run's files go in runs/<run_name>), e.g. run_name = \"toon\"")
    path = (drive or Path(".")) / "runs" / name
    if drive is None and in_colab():  # said where the run is chosen: mount_drive's line spoke of the models alone,
        # which download again, not of hours of training lost with the runtime (forty-third session's audit)
        print(RUN_ON_RUNTIME.format(run=path.as_posix()))
    return path


#: What `run_path` says in Colab without Drive: the runtime's disk goes with a disconnect, and the run with it.
RUN_ON_RUNTIME = ("{run} is on this Colab runtime's disk only: a disconnect deletes the run (its snapshots and "
                  "training state). To keep it, set use_drive = True and allow Google Drive, then run the notebook "
                  "again.")


def upload_images(folder: str | os.PathLike = "uploads", parameter: str = "photo_path",
                  attempts: int = 2, own_folder: bool = False) -> list[UploadedFile]:
    """Ask for files with Colab's upload dialog and save them into `folder` (`save_uploads`; with `own_folder`, into a
    folder of their own inside it).

    A cancelled dialog is asked again (`attempts` times in all), then `UploadCancelled` says what to do.
    Outside Colab there is no blocking dialog: `NotebookStop` says to set `parameter` in the notebook's parameters
    cell (or to use the upload button of the notebook's panel) instead.
    """
    if not in_colab():
        raise NotebookStop(f"upload_images() needs Google Colab's upload dialog; set {parameter} in the parameters "
                           "cell instead")
    from google.colab import files

    for attempt in range(1, attempts + 1):
        uploaded = files.upload()
        if uploaded:
            return save_uploads(uploaded, folder, own_folder=own_folder)
        if attempt < attempts:
            print("No file was chosen: choose one in the upload dialog below.")
    raise UploadCancelled(f"no file uploaded: run this cell again and choose a file, or set {parameter} in the "
                          "parameters cell")


def save_uploads(files: Mapping[str, bytes], folder: str | os.PathLike = "uploads",
                 own_folder: bool = False) -> list[UploadedFile]:
    """Write uploaded files ({file name: content}) into `folder` under their base names. A name already holding
    other content (an earlier upload, another file of this one) gets a number, `me-1.jpg`; the `UploadedFile`s
    returned keep the names the user chose.

    `own_folder` (01's training images, which are a folder's files): into `folder/upload-<digest>` instead, named by
    the files' names and contents, so that an upload is trained on alone, and the same images uploaded again (a new
    runtime, the run resumed) are the same folder. Uploads that shared `data/` were trained on together: a rejected
    upload's images, or an earlier run's, with the new ones, nothing said (forty-first session's audit)."""
    folder = Path(folder)
    if own_folder:
        digest = hashlib.sha256()
        for name, data in sorted(files.items()):
            digest.update(hashlib.sha256(Path(name).name.encode() + b"/" + bytes(data)).digest())
        folder = folder / f"upload-{digest.hexdigest()[:12]}"
    uploads: list[UploadedFile] = []
    for name, data in files.items():
        data = bytes(data)
        base = Path(Path(name).name or "upload")
        path, number = folder / base, 0
        while (path in {upload.path for upload in uploads}
               or (path.exists() and (not path.is_file() or path.read_bytes() != data))):
            number += 1
            path = folder / f"{base.stem}-{number}{base.suffix}"
        if not path.is_file():  # the same content there already is kept as it is: rewritten, its new time made a
            with atomic_write_path(path) as tmp:  # resumed fine-tuning run call its images replaced
                tmp.write_bytes(data)
        uploads.append(UploadedFile(path, base.name))
    return uploads


def choose_photo(photo_path: str | os.PathLike | None = None, folder: str | os.PathLike = "uploads"
                 ) -> str | os.PathLike | None:
    """The photo a notebook works on: `photo_path` when set, else Colab's upload dialog (an `UploadedFile`).

    Outside Colab with no path, returns None: the notebook's panel then offers an upload button. A `photo_path` that is
    no path is refused naming it (ValueError: `photo_path = 3` was "TypeError: expected a path, ..." in the panel's
    status line; forty-first session's audit). Several photos chosen in the dialog: the first is used, and a line
    says which, naming the others and how to do them (they were saved and dropped unsaid; forty-fourth session's
    audit).
    """
    if photo_path is not None and not isinstance(photo_path, (str, os.PathLike)):
        raise ValueError(f"photo_path = {photo_path!r}: set it in the parameters cell to the path of your photo, in "
                         'quotes, e.g. photo_path = "me.jpg", or leave it empty ("") to upload one')
    if photo_path:
        return photo_path
    if in_colab():
        first, *others = upload_images(folder, parameter="photo_path")
        if others:
            them = "it" if len(others) == 1 else "one of them"
            print(f"{len(others) + 1} photos uploaded, and this notebook takes one at a time: it uses {first.name}. "
                  f"For {_upload_names(others)}, run this cell again and upload {them} alone.")
        return first
    return None


#: What 01 says to do about an upload with too few images (`choose_data`).
UPLOAD_MORE = ("Run this cell again and upload more: all your training images at once, as a .zip or as images (an "
               "upload is trained on alone, not with the ones before).")


def choose_data(data_path: str | os.PathLike | None = None, folder: str | os.PathLike = "data",
                run_dir: str | os.PathLike | None = None) -> str:
    """Notebook 01's training images: `data_path` (a folder or .zip of images) when set, else what the user uploads
    in Colab's dialog (a .zip, or images: the folder of their own they are saved in, `save_uploads(own_folder=True)`).
    `NotebookStop` says what to set instead of a traceback later: outside Colab with no path, and for a path that
    names nothing, or fewer images than fine-tuning takes (`data.MIN_IMAGES`), counted as files and then as images
    that can be read (`data.unreadable_images`); an upload with too few images is said by the names of its files, with
    "run this cell again and upload more" (it named a data_path the user never set, the runtime's copy, and advised a
    path on the user's own computer; forty-first session's audit). An upload of several .zip files, or of a .zip
    with other files, is refused (`_check_one_zip`).

    `run_dir` (01's run folder), in Colab: where its run was trained on an upload, the dialog is told that the same
    images continue it, and other images, uploaded or at `data_path`, are refused here in upload words, naming
    run_name: a resumed run keeps its images, and the training cell refused them, after the base's download, naming
    data/upload-<digest> folders the user never chose (forty-third and forty-fifth sessions' audits). The same images,
    loose or in a .zip (`_same_images`), are written back where the run recorded them (`_restore_upload`), so the
    training cell resumes it as it was, nothing said."""
    uploads: list[UploadedFile] = []
    earlier = _run_upload(run_dir, folder) if run_dir is not None and in_colab() else None
    if data_path:
        data = str(data_path)
    elif in_colab():
        if earlier is not None:
            print(f"{Path(run_dir).as_posix()} was trained on an upload of {_names(earlier[1])}: to continue it, "
                  "upload those same images (or a .zip of them); other images need a new run_name.")
        uploads = upload_images(folder, parameter="data_path", own_folder=True)
        _check_one_zip(uploads)
        data = str(uploads[0].path if len(uploads) == 1 and zipfile.is_zipfile(uploads[0].path)
                   else uploads[0].path.parent)
    else:
        raise NotebookStop(f"No training images: data_path is empty.\n{DATA_HINT}")
    from .data import MIN_IMAGES, TooFewImagesError, check_image_files, image_files, unreadable_images
    from .images import IMAGE_SUFFIXES
    from .messages import counted

    source = user_path(data).absolute()
    try:  # no such folder or .zip file, neither a folder nor a .zip file, too few image files
        check_image_files(source)
        unreadable = unreadable_images(source)
    except (OSError, ValueError) as exc:
        if not uploads:
            raise NotebookStop(f"data_path = {data!r}: {exc}.\n{DATA_HINT}") from None
        names = _upload_names(uploads)
        if not isinstance(exc, TooFewImagesError):
            raise NotebookStop(f"Your upload ({names}): {exc}.\n{UPLOAD_MORE}") from None
        kinds = "" if exc.files else f" (their names end in {', '.join(IMAGE_SUFFIXES)})"
        raise NotebookStop(f"Your upload ({names}) holds {counted(len(exc.files), 'image file')}{kinds}; fine-tuning "
                           f"needs at least {MIN_IMAGES}, and a few hundred is best.\n{UPLOAD_MORE}") from None
    if unreadable:
        total = len(image_files(source))
        listed = ", ".join(f"{name} ({why})" for name, why in unreadable[:3])
        more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        said = f"Your upload ({_upload_names(uploads)})" if uploads else f"data_path = {data!r}"
        raise NotebookStop(f"{said}: {len(unreadable)} of its {counted(total, 'image file')} cannot be read as images: "
                           f"{listed}{more}; fine-tuning needs at least {MIN_IMAGES} images it can read. Replace or "
                           f"add images.\n{UPLOAD_MORE if uploads else DATA_HINT}")
    again = ""
    if earlier is not None and earlier[0] != str(source):
        continued = _continue_upload(earlier, source, Path(run_dir), uploads, data)
        if continued != data:  # said as the upload's own folder is, relative to the working folder where inside it
            here = Path.cwd()
            data = str(Path(continued).relative_to(here)) if Path(continued).is_relative_to(here) else continued
            again = f", the images {Path(run_dir).as_posix()} was trained on"
            if not uploads:
                print(f"data_path = {data_path!r} holds the {counted(len(earlier[1]), 'image')} "
                      f"{Path(run_dir).as_posix()} was trained on (an upload): the run goes on with them.")
    if uploads:
        print(f"Training images: this upload alone ({_upload_names(uploads)}; "
              f"{counted(len(image_files(data)), 'image file')}){again}, saved in {data} on this runtime: after a "
              "disconnect, upload the same images again to continue the run.")
    return data


def _check_one_zip(uploads: Sequence[UploadedFile]) -> None:
    """Refuse (`NotebookStop`) an upload of several files among which is a .zip: the data is one .zip or a folder of
    images, and a .zip in that folder is not read. Two .zip files were "0 image files ... upload more", and a .zip
    with images trained on the images alone, said in the training cell, after the base's download, naming the
    runtime's folder (forty-fifth session's audit). Refused, not unzipped beside the images: the images trained on
    are then the files as the user chose them, which the same upload gives again to continue the run."""
    zips = [upload for upload in uploads if Path(upload.name).suffix.lower() == ".zip"]
    if not zips or len(uploads) == 1:
        return
    held = (f"{len(zips)} .zip files" if len(zips) == len(uploads)
            else f"{'a .zip' if len(zips) == 1 else f'{len(zips)} .zip files'} ({_upload_names(zips)}) and other files")
    raise NotebookStop(f"Your upload ({_upload_names(uploads)}) holds {held}, and one upload is trained on as one .zip "
                       "or as images: run this cell again and upload one .zip of all your training images, or the "
                       "images themselves.")


def _continue_upload(earlier: tuple[str, list[str], dict], source: Path, run_dir: Path,
                     uploads: Sequence[UploadedFile], data: str) -> str:
    """The data to continue the run in `run_dir`, trained on an upload (`earlier`, `_run_upload`), given the images at
    `source` (`data` as given: `uploads`, or data_path): the path the run recorded, its images written back there
    from `source` where they are the same (`_same_images`); `data` for a state of an older toonlib, which recorded no
    contents, where its files' names and sizes are the same (`data_moved`). Other images are refused
    (`NotebookStop`) in upload words, also at a data_path: the refusal of the training cell said to restore a
    data/upload-<digest> folder the user never chose, gone after a disconnect (forty-fifth session's audit)."""
    from .train.resume import data_moved

    recorded, files, state = earlier
    if Path(recorded).exists() and _same_images(state, Path(recorded)) is not None:
        return recorded  # the same runtime: the run's upload is still there
    if (same := _same_images(state, source)) is not None:
        _restore_upload(Path(recorded), source, same)
        return recorded
    if not state.get("data_digests") and data_moved(state, str(source)):
        return data
    run = run_dir.as_posix()
    if uploads:
        raise NotebookStop(f"Your upload ({_upload_names(uploads)}) is not the images {run} was trained on "
                           f"({_names(files)}), and a resumed run keeps its images: run this cell again and upload "
                           "those same images to continue it, or set run_name in the parameters cell to a new name to "
                           "train a new run on these.")
    raise NotebookStop(f"data_path = {data!r} is not the images {run} was trained on (an upload of {_names(files)}), "
                       "and a resumed run keeps its images: leave data_path empty and run this cell again to upload "
                       "those same images to continue it, or set run_name in the parameters cell to a new name to "
                       f"train a new run on {data!r}.")


def _same_images(state: dict, source: Path) -> dict[str, str] | None:
    """For each image file a run's training state records (`data_files`), the name of the file of `source` (a folder
    or .zip) that holds its content (`data_digests`: SHA-256, as the dataset records them); None where `source`'s
    image files are not those contents one for one, or the state records no content of one of them.

    By content, not by name: a .zip of the images' folder (Finder's Compress, Windows' Compressed folder) names them
    'faces/0.png' where the images themselves are '0.png', and a browser may rename a file it is given twice, so a
    comparison of names, even with a .zip's top folder taken off, refused the same images the dialog asked for
    (forty-fifth session's audit); a size does not tell an edited image from the one trained on."""
    from .data import content_digest, image_files_read

    recorded = [str(entry[0]) for entry in state.get("data_files") or []]
    digests = state.get("data_digests") or {}
    if not recorded or any(name not in digests for name in recorded):
        return None
    found: dict[str, list[str]] = {}
    try:
        with image_files_read(source) as (names, read):
            if len(names) != len(recorded):
                return None
            for name in names:
                found.setdefault(content_digest(read(name)), []).append(name)
    except (OSError, ValueError, zipfile.BadZipFile):  # not readable as the data it was checked to be: not the same
        return None
    wanted: dict[str, list[str]] = {}
    for name in recorded:
        wanted.setdefault(digests[name], []).append(name)
    if sorted(wanted) != sorted(found) or any(len(wanted[digest]) != len(found[digest]) for digest in wanted):
        return None
    return {name: new for digest, names in wanted.items() for name, new in zip(names, found[digest])}


def _restore_upload(recorded: Path, source: Path, same: Mapping[str, str]) -> None:
    """Write the images of `source` at `recorded`, where a run recorded its upload (`_run_upload`), under the names it
    recorded (`same`, `_same_images`): a folder of them, or the .zip the upload was (a file in its upload folder).
    The run then resumes on the path, names and contents it was trained on, its dataset cache reused, nothing said;
    with the upload's new path its resume was refused, or warned of a move naming two data/upload-<digest> folders
    (forty-fifth session's audit)."""
    from .data import image_files_read

    as_zip = not _UPLOAD_FOLDER.fullmatch(recorded.name)
    with image_files_read(source) as (_, read):
        if as_zip:
            with atomic_write_path(recorded) as tmp, zipfile.ZipFile(tmp, "w") as archive:
                for name, new in same.items():
                    archive.writestr(name, read(new))
            return
        for name, new in same.items():
            with atomic_write_path(recorded / name) as tmp:
                tmp.write_bytes(read(new))


#: The name of the folder an upload of training images is saved in (`save_uploads(own_folder=True)`).
_UPLOAD_FOLDER = re.compile(r"upload-[0-9a-f]{12}")


def _run_upload(run_dir: str | os.PathLike, folder: str | os.PathLike) -> tuple[str, list[str], dict] | None:
    """The upload (in `folder`, `save_uploads(own_folder=True)`) that the run in `run_dir` was trained on, as its
    newest training state records it: (the data path, its image files' names, the state); None for a run of
    other data, or no run. The state is mapped, its tensors not read: a set-up cell's look at the record."""
    from .train.snapshots import newest_state_nimg, state_name

    nimg = newest_state_nimg(run_dir)
    if nimg is None:
        return None
    try:
        state = torch.load(user_path(run_dir) / state_name(nimg), map_location="cpu", weights_only=True, mmap=True)
        recorded, files = str(state["config"]["data"]), [str(entry[0]) for entry in state["data_files"]]
    except Exception:  # unreadable, of another version: the training cell says what it is
        return None
    uploads = user_path(folder).absolute()
    if not Path(recorded).is_relative_to(uploads):
        return None
    parts = Path(recorded).relative_to(uploads).parts
    return (recorded, files, state) if parts and _UPLOAD_FOLDER.fullmatch(parts[0]) else None


def _names(names: Sequence[str], shown: int = 3) -> str:
    """'12 images: 0.png, 1.png, 2.png and 9 more'."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} images: {', '.join(names[:shown])}{more}"


def _upload_names(uploads: Sequence[UploadedFile], shown: int = 3) -> str:
    """The names the user chose for `uploads`, the first `shown` of them and how many more."""
    more = f" and {len(uploads) - shown} more" if len(uploads) > shown else ""
    return ", ".join(upload.name for upload in uploads[:shown]) + more


def display_size(size: int, bound: int) -> int:
    """The side to show an image of side `size` at: its largest integer multiple up to `bound`, or `bound`
    when the image is larger (shrunk to fit). Never stretched to the width of the page."""
    if size < 1 or bound < 1:
        raise ValueError(f"display_size needs sides >= 1 px, got size={size}, bound={bound}")
    return bound if size >= bound else size * (bound // size)


def show(images: Image.Image | Sequence[Image.Image], titles: Sequence[str] | None = None, bound: int = 256) -> None:
    """Display one image or a row of images (with titles), each at `display_size(width, bound)`."""
    from IPython.display import display

    from .images import labelled_grid

    if isinstance(images, Image.Image):
        images = [images]
    if not images:
        raise ValueError("show: no images to show")
    display(labelled_grid([list(images)], col_labels=titles, cell=display_size(images[0].width, bound)))


def offer_download(path: str | os.PathLike, note: str = "") -> None:
    """Print where `path` is, followed by `note` (what was saved; whether it replaced a file, `files.replaced_note`); in
    Colab also start the browser's download of it (its "saved" line was printed only elsewhere: a save cell in Colab
    with Drive mounted said nothing of the file on Drive)."""
    path = user_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path} to download")
    print(f"saved {path.resolve()}{note}" + ("; your browser downloads a copy" if in_colab() else ""))
    if in_colab():
        from google.colab import files

        files.download(str(path))


SHORT_RUN_STEPS = 30  # plot_losses marks each step of runs up to this long


def plot_losses(losses, title: str = "projection: LPIPS distance per step"):
    """A matplotlib figure of loss curves ([steps] or [steps, N] array), its step axis in whole steps; a short run's
    steps are marked (a line through one step draws nothing)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3))
    short = len(losses) <= SHORT_RUN_STEPS
    ax.plot(losses, marker="o" if short else None, markersize=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole steps: no 0.5 ticks
    if short:  # half a step of room either side: one step's axis was ticked from -0.06 to 0.06
        ax.set_xlim(-0.5, len(losses) - 0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("distance")
    ax.set_title(title)
    fig.tight_layout()
    return fig


class _Line(str):
    """A string that IPython shows as it is: `display("x")` shows its repr, `'x'`, quotes included."""

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def snapshot_viewer(run_dir: str | os.PathLike | None = None):
    """A `finetune` callback for notebooks: one line of the latest numbers (kimg, losses, ADA's p and r_t, the
    quality metric), the fakes grid and the training plots (metrics.png), each updated in place at every
    snapshot, so the cell shows the run as it evolves without growing. Its `stopped()` removes the line
    'waiting for the first snapshot...' when the run ends before one (above an error, it misled).

    The line is shown at once, the grid and the plots at the first snapshot: below the progress bars that `finetune`
    shows meanwhile, which stay right under the line. Shown here, empty, they came before the bars, and the first
    snapshot's grid and plots (~1500 px at 1024 px models) pushed the bar that counts the run out of the window
    (forty-first session's audit).

    `run_dir`: the run, when it has a training state to resume (`newest_state_nimg`), is said to be resumed from it,
    and its `resumed(nimg)`, which the trainer calls once its bar is shown, shows that snapshot's grid and plots:
    a resumed run said "waiting for the first snapshot..." above a bar at 33%, and showed nothing of the run until
    its next snapshot (forty-third session's audit)."""
    from IPython.display import Image as DisplayImage
    from IPython.display import display

    from .train.snapshots import fakes_name, newest_state_nimg, snapshot_name

    def resuming(nimg: int, now: str) -> _Line:
        return _Line(f"{now} {Path(run_dir).as_posix()} at {nimg / 1000:.3f} kimg ({snapshot_name(nimg)})")

    nimg = None if run_dir is None else newest_state_nimg(run_dir)
    status = display(_Line("waiting for the first snapshot...") if nimg is None else
                     _Line(f"{resuming(nimg, 'resuming')}: waiting for the next snapshot..."), display_id=True)
    slots: dict[str, object] = {}  # "fakes", "plot_path": their display handles, once shown
    # the losses are the means of the minibatches since the snapshot before (metrics.jsonl's, plotted), not the last
    # minibatch's that the bar shows under the same names (forty-third session's audit)
    shown = (("kimg", "kimg {:.3f}"), ("loss_G", "G {:.3f}"), ("loss_D", "D {:.3f}"), ("augment_p", "p {:.3f}"),
             ("r_t", "r_t {:.3f}"), ("kid", "KID {:.4f}"), ("fid", "FID {:.2f}"))
    means = "(means since the snapshot before)"

    waiting = True
    resumed_at: int | None = None  # the training state the trainer resumed from, once it says so

    def put(slot: str, content: object) -> None:
        if slot in slots:
            slots[slot].update(content)
        else:
            slots[slot] = display(content, display_id=True)

    def show_snapshot(info: dict) -> None:
        nonlocal waiting
        waiting = False
        texts = []
        for key, text in shown:
            if info.get(key) is not None:
                texts.append(text.format(info[key]) + (f" {means}" if key == LOSSES[-1] else ""))
        status.update(_Line("  ".join(texts)))
        if info.get("fakes") is not None:
            put("fakes", info["fakes"])
        if info.get("plot_path") is not None:
            put("plot_path", DisplayImage(filename=str(info["plot_path"])))

    def resumed(at: int) -> None:
        """The trainer resumed the run from its training state of `at` images, and shows its bar: that snapshot's
        grid and the run's plots, below the bar, until the next snapshot replaces them."""
        nonlocal resumed_at
        resumed_at = at
        status.update(_Line(f"{resuming(at, 'resumed')}: waiting for the next snapshot..."))
        folder = Path(run_dir)
        if (folder / fakes_name(at)).is_file():
            put("fakes", DisplayImage(filename=str(folder / fakes_name(at))))
        if (folder / "metrics.png").is_file():
            put("plot_path", DisplayImage(filename=str(folder / "metrics.png")))

    def stopped() -> None:
        """The run ended without a snapshot (an error, an interrupt, nothing left to train): its message alone, no
        'waiting...' above; a resumed run's line says where it resumed, the grid and plots shown being of then."""
        if waiting:
            status.update(_Line("") if resumed_at is None else resuming(resumed_at, "resumed"))

    show_snapshot.stopped = stopped
    if run_dir is not None:
        show_snapshot.resumed = resumed
    return show_snapshot


#: The keys of the snapshot viewer's line that are losses: means over the snapshot's minibatches.
LOSSES = ("loss_G", "loss_D")


def run_training(config) -> Path:
    """Notebook 01's training: `finetune(config)` (a `TrainConfig`) showing each snapshot in place
    (`snapshot_viewer`, which says a run resumed and shows its newest grid and plots); returns the last snapshot.
    Stopped with the kernel's interrupt (how a notebook ends training early), it raises `NotebookStop` saying which
    snapshot it continues from and what to run next."""
    from .train import finetune
    from .train.snapshots import newest_state_nimg, snapshot_name

    viewer = snapshot_viewer(config.run_dir)
    try:
        snapshot = finetune(config, callback=viewer)
        viewer.stopped()  # a run that had reached kimg trains nothing: its warning alone, no 'waiting...' above
        return snapshot
    except BaseException as exc:
        viewer.stopped()
        if not interrupted(exc):  # ImportError among them: an import the interrupt cut short
            raise
        # what the cell run again continues from is the newest training state, not the newest network file: a second
        # interrupt in the first snapshot left its network alone, and "continue from" it started over (audit)
        nimg = newest_state_nimg(config.run_dir)
        if nimg is None:
            raise NotebookStop("Training stopped (interrupted) before its first snapshot was saved whole, so there is "
                               "nothing to continue from: run this cell again to start over.") from None
        raise NotebookStop(f"Training stopped (interrupted).\nRun this cell again to continue from its newest "
                           f"snapshot ({snapshot_name(nimg)}), or the next cell to see the run so far.") from None


def show_run(run_dir: str | os.PathLike) -> None:
    """Show a fine-tuning run: its training plots (metrics.png), its snapshots and the settings that blend the newest
    in notebook 02. Before the first snapshot, `NotebookStop` says to train first."""
    from IPython.display import Image as DisplayImage
    from IPython.display import display

    from .train import latest_snapshot, snapshot_paths

    newest = latest_snapshot(run_dir)
    if newest is None:
        raise NotebookStop(f"No snapshot in {run_dir} yet: run the training cell above first (it saves one every "
                           "snapshot_kimg).")
    plot = Path(run_dir) / "metrics.png"
    if plot.is_file():  # a snapshot without its plot (a second interrupt in the first one, a copy): it failed here
        display(DisplayImage(filename=str(plot)))
    else:
        print(f"(no training plots in {run_dir}: metrics.png is drawn as each snapshot is saved whole)")
    print("snapshots:", *[s.name for s in snapshot_paths(run_dir)], sep="\n  ")
    # the base as `toonlib blend` finds it, through the runs started from (a snapshot file's run: its base; the
    # snapshot was named, an earlier toon, and 02 blended toon with toon)
    from .pipeline import default_base, missing_recorded_base

    missing = missing_recorded_base(newest)
    settings = [f"base_model = {os.fspath(missing or default_base(newest))!r}", f"toon_model = {str(newest)!r}",
                "toon_network = 'G_ema'"]
    print(f"\nBlend it in 02_blend.ipynb with {', '.join(settings)}")
    if missing:
        print(f"(the base its run recorded, {missing}, is not there: put it back, or set base_model to the model the "
              "run was fine-tuned from)")


def load_blend_models(base_model: str, toon_model: str, toon_network: str | None = None,
                      device: torch.device | str | None = None) -> tuple[Generator, Generator]:
    """Notebook 02's models: (base, toon), the toon being the generator its file keeps un-blended
    (`blending.toon_generator`: `toon_network` when given, else G of Toonify's file and G_ema of a training
    snapshot, as `toonlib blend` takes). Raises `NotebookStop` when the two cannot be blended (`check_blendable`),
    before returning either (the loading cell then leaves none behind: a model of this attempt kept with the
    parameters of the one before was said to be "changed since the set-up cell ran"); a file that is no checkpoint
    is said naming its parameter. The loading cell is 02's second set-up cell: it counts as one (`set_up_count`),
    so an explorer of the models before refuses to go on (`EXPLORER_SET_UP_AGAIN`)."""
    from .blending import toon_generator
    from .checkpoints import load_generator

    global _set_ups
    _set_ups += 1  # first: a failed load leaves no explorer of the models before going on either
    with _naming("base_model", base_model):
        base = load_generator(base_model, device=device)
    with _naming("toon_model", toon_model):
        toon = toon_generator(toon_model, which=toon_network, device=device)
    check_blendable(toon, base, toon_model, base_model)
    return base, toon


def check_blendable(toon, base, toon_model: str, base_model: str) -> None:
    """Notebook 02's check right after loading: `NotebookStop` saying to set base_model to the model the toon was
    fine-tuned from when the two cannot be blended (other architectures), instead of a dump of layer shapes later."""
    from .blending import check_compatible

    try:
        check_compatible(toon, base)
    except ValueError:
        raise NotebookStop(_cannot_blend(toon_model, toon.img_resolution, base_model, base.img_resolution)) from None
