"""How toonlib talks to its users about what they gave it.

- `warn`: a warning attributed to the user's line, the first frame outside toonlib, wherever in toonlib it
  arises (the same warning can come from `align_face`, from `Toonifier` or from the command line, at other call
  depths, where a fixed `stacklevel` would point into toonlib's own files).
- `check_count`: a whole number a user gave (steps, a batch size, ...) refused with its name and its range, not
  with Python's message about the operation that tripped over it later.
- `check_number`: the same for a real number a user gave (a learning rate, a weight).
- `counted`: a number and its noun, singular or plural ("1 step", "500 steps").
- `progress_bar`: tqdm's bar for a terminal or a notebook, its numbers readable at any width.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import inspect
import math
import numbers
import os
import select
import signal
import sys
import threading
import warnings
from typing import Callable, Iterator, NoReturn

__all__ = ["check_count", "check_number", "clear_on_close", "counted", "expected_errors", "in_toonlib", "install_line",
           "progress_bar", "run_program", "summary", "warn", "with_article"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def in_toonlib(filename: str) -> bool:
    """Whether the source file `filename` (a frame's `f_code.co_filename`) is one of toonlib's."""
    return os.path.abspath(filename).startswith(_PACKAGE)


def install_line(extra: str, upgrade: bool = False) -> str:
    """The command that installs toonlib's optional `extra` ("app", "dlib", "notebook"; `upgrade`: with -U, for one
    installed too old), as README writes it: in double quotes, which every shell takes (Windows' cmd.exe keeps single
    quotes in the name). The messages wrote 'toonlib[app]', and dlib's packages by name (forty-second session's
    audit)."""
    return f'pip install {"-U " if upgrade else ""}"toonlib[{extra}]"'


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can fix (bad input, missing weights or models, no internet, an optional extra not installed),
    whose messages say what to do: the command line reports them in one line (exit 2), the notebooks as their
    message alone (`notebook.brief_errors`)."""
    from .align import LandmarkBackendError
    from .checkpoints import CheckpointError
    from .download import DownloadError
    from .losses import PerceptualWeightsError

    return (CheckpointError, DownloadError, PerceptualWeightsError, LandmarkBackendError, ValueError, OSError,
            ImportError)


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` is Ctrl-C (KeyboardInterrupt) or was raised because of one (in its chain of causes): an
    extension module's import that Ctrl-C cut short raises ImportError('initialization failed') from it (pybind11's
    modules, e.g. matplotlib's), which is an interruption, not an error to report."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def run_program(main: Callable[[], int]) -> NoReturn:
    """Run `main` as the process (the `toonlib` program, `python -m toonlib`, `python -m toonlib.train`): exit with its
    status. Once it is done, a Ctrl-C while Python exits ends the process with that status: at once while it joins
    threads and runs exit handlers (Python raised KeyboardInterrupt in whatever ran then, with a traceback "Exception
    ignored in ..." under the command's own last line), ignored after them (`_ignore_ctrl_c_at_exit`). Not inside an
    interactive host (IPython's `%run -m toonlib`, `python -i`), whose next Ctrl-C is its own, nor outside the main
    thread. A standard stream the process was started with closed (`>&-`, `2>&-`, as some launchers start programs)
    writes to /dev/null (`_closed_streams_to_devnull`)."""
    _closed_streams_to_devnull()
    # Registered before the command runs: exit handlers run last registered first, so this one runs after those of
    # everything the command imports or uses (torch, tqdm, tempfile's cleanups register theirs then).
    atexit.register(_ignore_ctrl_c_at_exit)
    try:
        with _stop_signals_as_ctrl_c():
            status = main()
    except SystemExit as exc:  # argparse's usage errors and --help, parser.exit
        _exit_at_once_on_ctrl_c(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1)
        raise
    _exit_at_once_on_ctrl_c(status)
    sys.exit(status)


def _closed_streams_to_devnull() -> None:
    """Give stdout and stderr /dev/null where the process was started with them closed: Python sets them to None, and a
    command did its work, then failed flushing stdout (a traceback, exit 1, even `--version`); with stderr closed the
    first progress bar failed, and `project` wrote nothing (thirty-second session's CLI audit). A stream on a
    descriptor open for reading only is one too: a launcher script (pyenv's shims) started with it closed reads
    itself through the lowest free descriptor, 2, which Python then takes for stderr. Descriptors 1 and 2 are left
    as they are: a file opened since may hold one of them."""
    for name in ("stdout", "stderr"):
        if not _writable(getattr(sys, name)):
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (the process's stream, never closed)


def _writable(stream: object) -> bool:
    """Whether `stream` can be written: not None, nor on a descriptor open for reading only (as far as can be told)."""
    if stream is None:
        return False
    try:
        import fcntl

        return fcntl.fcntl(stream.fileno(), fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except (ImportError, AttributeError, ValueError, OSError):  # no fcntl (Windows), no descriptor (a notebook's)
        return True


#: SIGHUP, where the platform has it (not Windows): its terminal closed, an ssh connection dropped, `kill -HUP`.
SIGHUP: int | None = getattr(signal, "SIGHUP", None)
#: The signals a program's command takes as Ctrl-C (`_stop_signals_as_ctrl_c`): SIGTERM and SIGHUP.
STOP_SIGNALS: tuple[int, ...] = (signal.SIGTERM,) + ((SIGHUP,) if SIGHUP is not None else ())


@contextlib.contextmanager
def _stop_signals_as_ctrl_c() -> Iterator[None]:
    """Inside it SIGTERM (`kill`, `timeout`, a job scheduler) and SIGHUP (its terminal closed, an ssh connection
    dropped) stop a command as Ctrl-C does: KeyboardInterrupt, so the temporary file of an output being written is
    removed and the command says 'interrupted' (exit 130). By default SIGTERM ended the process at once, silently,
    leaving that file; SIGHUP still did so until the forty-third session's audit: a closed terminal left the web app's
    visitors' photos on disk for good and lost a fine-tuning run's training since its last snapshot. SIGHUP only where
    it has Python's default action: `nohup` ignores it, and that stays. Not under torchrun (WORLD_SIZE > 1), which
    stops its other processes with SIGTERM, nor outside the main thread; fine-tuning takes them as one Ctrl-C of its
    own (the run saved at the end of the minibatch)."""
    if threading.current_thread() is not threading.main_thread() or os.environ.get("WORLD_SIZE", "1") != "1":
        yield
        return
    before = {signum: signal.signal(signum, _raise_interrupt) for signum in STOP_SIGNALS
              if signum != SIGHUP or signal.getsignal(signum) == signal.SIG_DFL}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _raise_interrupt(signum: int = signal.SIGTERM, *_: object) -> NoReturn:
    if signum == SIGHUP:
        after_hang_up()
    raise KeyboardInterrupt


def after_hang_up() -> None:
    """After SIGHUP: give stdout and stderr /dev/null where they can no longer be written, so that the clean stop that
    follows (its messages, a progress bar's last lines) writes nowhere rather than failing in the middle. A terminal
    that hung up answers every write with EIO, and a pipe whose reader ended with it (`| tee log`, hung up too) with
    EPIPE. The descriptor itself is pointed at /dev/null, so every stream on it (tqdm's bars hold their own) is
    quiet. A stream still writable (a log file, a pipe to a reader still there, a terminal still open after
    `kill -HUP`) is kept: the stop's messages reach it."""
    descriptors = set()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(AttributeError, ValueError, OSError):  # None, closed, no descriptor (a notebook's)
            descriptors.add(stream.fileno())
    for fd in descriptors:
        if _dead_end(fd):
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)


def _dead_end(fd: int) -> bool:
    """Whether descriptor `fd` is open but can no longer be written: a hung-up terminal (even a write of nothing fails,
    EIO), a pipe or socket whose other end is gone (poll says POLLERR or POLLHUP)."""
    try:
        os.write(fd, b"")
    except OSError as exc:
        return exc.errno not in (errno.EBADF, errno.EINVAL)  # not open (for writing): nothing of ours to quieten
    if not hasattr(select, "poll"):
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    try:
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except OSError:
        return False


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Inside it Ctrl-C (and SIGTERM and SIGHUP where `run_program` made them one) waits: KeyboardInterrupt is raised
    when it ends. For the import of numpy and torch, whose extension modules lose an interrupt that comes while they
    load (the command then ran on) or turn it into an ImportError of their own ("Importing the numpy C-extensions
    failed"). Outside the main thread, where no signal handler can be set, it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = [signal.SIGINT] + [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is _raise_interrupt]
    before = {signum: signal.signal(signum, lambda signum, _: pending.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if pending:
            _raise_interrupt(SIGHUP if SIGHUP in pending else pending[0])


def _exit_at_once_on_ctrl_c(status: int) -> None:
    ipython = sys.modules.get("IPython")  # imported by Gradio too: a running shell is what counts
    interactive = hasattr(sys, "ps1") or sys.flags.interactive or (ipython is not None
                                                                   and ipython.get_ipython() is not None)
    if not interactive and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, functools.partial(_exit_now, status))


def _ignore_ctrl_c_at_exit() -> None:
    """(An exit handler, run after those the command registered.) Where `_exit_at_once_on_ctrl_c` set the command's
    status as Ctrl-C's, ignore Ctrl-C from here to the end of the process. After the exit handlers Python resets its
    signal handlers to the default (an ignored signal it keeps), and a finished `toonlib finetune` takes ~0.9 s more
    to end (torch's teardown): a Ctrl-C then killed it by SIGINT, 130 in a shell ("interrupted" in --help's words)
    for a run that was complete (fortieth session's audit). Ignored rather than `os._exit` at once, which would skip
    exit handlers: those the command registered (tempfile's removal of temporary folders, tqdm's) have run by now, and
    those registered before it (logging's flush) run next, uninterrupted; what follows frees memory. The joins of
    threads and the command's exit handlers before this one stay interruptible, ended at once with the status
    (`_exit_now`), as a hang there must be."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, functools.partial) and handler.func is _exit_now:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_now(status: int, *_: object) -> None:
    try:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # closed, None (an embedded interpreter), a reentrant write
                stream.flush()
    finally:
        os._exit(status)


class ToonlibWarning(UserWarning):
    """A warning of toonlib's (`warn`): one line on something to know or to fix. The command line and the notebooks
    (`notebook.brief_errors`) show it as that line alone."""


def warn(message: str, category: type[Warning] = ToonlibWarning) -> None:
    """`warnings.warn(message, category)` with the stack level of the innermost caller outside toonlib."""
    frame, level = sys._getframe(1), 2  # level 2: warn's caller
    while frame is not None and in_toonlib(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def check_count(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> None:
    """Raise ValueError unless `value` is a whole number (an int or NumPy integer, not a bool) >= `minimum` (and <=
    `maximum`). A float of a whole number is told to be written as an int ('got 4.0' read as if 4 were refused)."""
    def fits(number: object) -> bool:
        return number >= minimum and (maximum is None or number <= maximum)

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not fits(value):
        as_int = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
                  and float(value).is_integer() and fits(value))
        got = f"write it as an int: {int(value)}, not {value!r}" if as_int else f"got {value!r}"
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be a whole number {bounds}, {got}")


def check_number(name: str, value: object, minimum: float = 0) -> None:
    """Raise ValueError unless `value` is a finite real number (an int, a float or a NumPy scalar, not a bool)
    >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")


def check_flag(name: str, value: object) -> None:
    """TypeError unless `value` is True or False: "no" or 0 would be taken as a truth value (`progress="no"` showed
    the bars)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_callback(callback: object, call: str, *example: object) -> None:
    """TypeError unless `callback` is None or a function that takes `example`'s arguments, as it is called (`call`, e.g.
    "callback(step, distance, w) after every step"): a wrong one failed only when first called, after the first
    projection step or a fine-tuning run's first snapshot. A callable whose signature Python cannot read passes."""
    if callback is None:
        return
    if not callable(callback):
        raise TypeError(f"callback is a function, called as {call}, or None, got {type(callback).__name__}")
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError, NameError):  # some builtins and extension functions; an annotation Python 3.14
        return                                      # cannot evaluate
    try:
        signature.bind(*example)
    except TypeError:
        name = getattr(callback, "__name__", type(callback).__name__)
        raise TypeError(f"callback is called as {call}, but {name}{signature} cannot be called with "
                        f"{counted(len(example), 'argument')}") from None


def stdout_failure(exc: OSError) -> str:
    """What stdout's failure `exc` (not a reader gone away: that is a quiet exit 141) means, in the user's words:
    "[Errno 28] No space left on device" of `> /dev/full` alone read as an output file's disk."""
    reason = exc.strerror or str(exc)
    return f"could not write to the standard output, where `>` or `|` sends it ({reason[:1].lower()}{reason[1:]})"


def with_article(words: str) -> str:
    """`words` after "a" or "an", by their first letter: with_article("e4e encoder") -> 'an e4e encoder'."""
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless the count is one: counted(1, "step") -> '1 step', (2, "face") -> '2 faces'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


#: Seconds between a progress bar's updates where its output is a file or a pipe (a log), not a terminal.
LOG_PROGRESS_INTERVAL = 10.0


def progress_bar(**kwargs):
    """`tqdm.auto.tqdm(**kwargs)` with `dynamic_ncols`: in a terminal the bar follows the window's width; in a
    notebook it spans the output and its parts wrap onto lines of their own where the output is narrow
    (fine-tuning's live numbers, `G=... D=... p=... r_t=...`, squeezed a fixed bar to nothing and were cut off at
    a 1024 px window); its numbers wrap too (`_notebook_bar`). Written to a file or a pipe (`2> log`), the bar is
    updated every `LOG_PROGRESS_INTERVAL` seconds and at its end, not after every step (a 500-step projection wrote
    ~40 KB of bars to a log)."""
    from tqdm.auto import tqdm

    stream = kwargs.get("file") or sys.stderr
    is_terminal = getattr(stream, "isatty", lambda: False)()
    # in a notebook's kernel tqdm.auto's class is its own subclass of the notebook bar (module "tqdm.auto"): taken for
    # a log's, that bar was updated every 10 s (a 500-step projection on a GPU showed 0 until it ended) and not erased
    if any(base.__module__ == "tqdm.notebook" for base in tqdm.__mro__):
        tqdm = _notebook_bar()
    elif not is_terminal:  # a log
        kwargs.setdefault("mininterval", LOG_PROGRESS_INTERVAL)
        tqdm = _log_bar(tqdm)
    return tqdm(**{"dynamic_ncols": True, **kwargs})


@functools.cache
def _log_bar(tqdm: type) -> type:
    """A bar written to a log, which notes whether its line is open (`write_line` ends it once): two skipped photos in
    a row ended the bar's line twice, a blank line between them."""
    class LogBar(tqdm):
        line_open = False

        def display(self, *args, **kwargs):
            self.line_open = True  # its text written after a '\r', without a line end
            return super().display(*args, **kwargs)

    return LogBar


#: The narrowest a notebook's progress bar gets beside its numbers, which wrap under it instead.
NOTEBOOK_BAR_MIN_WIDTH = "120px"


@functools.cache
def _notebook_bar() -> type:
    """tqdm's notebook bar, its numbers' spaces plain ones: tqdm writes them as figure spaces (U+2007), which never
    break a line, and at a 360 px output fine-tuning's `0.012/0.012 kimg [00:01<00:00, G=0.696, D=1.32, p=..., r_t=...]`
    ran 84 px past the output's edge, p and r_t out of sight (thirty-second session's audit)."""
    from tqdm.notebook import tqdm

    class WrappingBar(tqdm):
        def display(self, *args, **kwargs):
            if hasattr(self, "container"):
                _follow_total(self)
            shown = super().display(*args, **kwargs)
            if hasattr(self, "container"):
                numbers = self.container.children[-1]
                numbers.value = numbers.value.replace("\u2007", " ")
            return shown

    return WrappingBar


def _follow_total(bar) -> None:
    """Give a notebook bar's widget the bar's total as its end, and `NOTEBOOK_BAR_MIN_WIDTH` once it has one (a bar of
    unknown total keeps tqdm's 20 px stub). tqdm sets the end only when the bar is built, so a total set later (an
    early-stopped projection's steps run, a Drive download's size once known) left an early stop's bar 2% full at
    "4/4", and a download's full, unknown-total bar at 10 of 380 MB; and the numbers beside a bar without a minimum
    width shrank it to 2 px at outputs of 610-740 px, fine-tuning's (thirty-ninth session's audits)."""
    widget = bar.container.children[1]
    if not bar.total:
        return
    widget.layout.min_width = NOTEBOOK_BAR_MIN_WIDTH  # the numbers wrap under the bar before it gets narrower
    if widget.max != bar.total:
        if widget.bar_style == "info":  # tqdm's look of a bar without a total
            widget.bar_style = ""
        if widget.layout.width == "20px":
            widget.layout.width = None
        widget.max = bar.total


def _erasable(bar) -> bool:
    """Whether `bar` can be erased: a notebook's widget, or text in a terminal. In a file or a pipe (a log) a bar's
    '\r' erases nothing."""
    stream = getattr(bar, "fp", None)  # none where the bar is disabled
    return hasattr(bar, "container") or getattr(stream, "isatty", lambda: False)()  # the notebook's: a widget


def clear_on_close(bar) -> None:
    """Have a bar broken off (a failed try, an error) erased when it closes, where erasing works (`_erasable`). In a
    log the next line, the error's, began after the bar's text; there the bar keeps its line, ended."""
    if _erasable(bar):
        bar.leave = False


def write_line(text: str, file=None) -> None:
    """Print `text` as a line of its own while progress bars may run (a warning, a skipped photo). A terminal's bars
    are erased and drawn again below the text, as `tqdm.write` does. In a log a bar's text cannot be erased, and
    `tqdm.write`'s line began after it ("toonify:   0%|   | 0/4 [00:00<?, ?photo/s]toonlib toonify: warning: ..."):
    there the bar's line is ended first, and the bar's next update starts below the text."""
    from tqdm import tqdm

    stream = sys.stdout if file is None else file
    with tqdm.get_lock():
        erased, logged = [], []
        for bar in list(getattr(tqdm, "_instances", ())):  # the bars writing where `text` goes (stdout and stderr mix)
            if (bar.disable or not hasattr(bar, "start_t")
                    or not (bar.fp == stream or all(f in (sys.stdout, sys.stderr) for f in (bar.fp, stream)))):
                continue
            if _erasable(bar):
                bar.clear(nolock=True)
                erased.append(bar)
            else:
                logged.append(bar)
        streams = []  # one line end for a log's nested bars (each bar wraps the stream: equal, not the same object),
        for bar in logged:  # none where no bar has written since the last line (`_log_bar`): two skipped photos in a
            if not any(bar.fp == fp for fp in streams):  # row had a blank line between them
                streams.append(bar.fp)
                if any(getattr(other, "line_open", True) for other in logged if other.fp == bar.fp):
                    bar.fp.write("\n")
        stream.write(f"{text}\n")
        stream.flush()
        for bar in logged:
            if hasattr(type(bar), "line_open"):  # toonlib's (`_log_bar`); another library's bar ends its line always
                bar.line_open = False
        for bar in erased:
            bar.refresh(nolock=True)


def summary(value: object) -> str:
    """`value` as a one-line repr shows it: an image's size and mode (`1024x1024 RGB`), a tensor's or array's shape
    (`[1, 18, 512]`), else its repr. Results print on one line, not as pages of numbers."""
    if hasattr(value, "size") and hasattr(value, "mode") and isinstance(value.size, tuple):  # a PIL image
        return f"{value.size[0]}x{value.size[1]} {value.mode}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a torch tensor or a NumPy array
        return f"[{', '.join(str(n) for n in value.shape)}]"
    return repr(value)
