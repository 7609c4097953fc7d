"""Ctrl-C during fine-tuning: the first lets the minibatch finish, saves the run there (network, fakes, metrics line,
latest.json and training state, not the quality metric), says so and stops with KeyboardInterrupt (the command line:
exit 130), and the run resumes exactly as if it had not stopped, its later snapshots on the `snapshot_kimg` grid. A
second Ctrl-C stops at once: the last complete snapshot stays the resume point. The SIGINT handler is installed only
in the main thread, for the run, and put back when it returns or fails.

The tiny 16 px networks, data set and settings of test_train.py, on one CPU thread.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from test_train import base, config, one_thread  # noqa: F401 (fixtures)

import toonlib.cli
from toonlib.train import Trainer, finetune, loop, newest_state
from toonlib.train.distributed import Distributed

# 50 minibatches of 4, snapshots every 10; every random stream in use, the ADA, R1 and path-length intervals
# longer than one minibatch (a stop between two snapshots is also one inside these intervals).
SETTINGS = dict(kimg=0.2, snapshot_kimg=0.04, augment_p=0.3, ada_interval=3, ada_kimg=0.02, pl_interval=2,
                r1_interval=3)
GRID = [0.04, 0.08, 0.12, 0.16, 0.2]
SAVED = re.compile(r"fine-tuning interrupted at (\d+\.\d{3}) kimg: saved (network-snapshot-(\d{9})\.safetensors) and "
                   r"the training state in (.+); run the same fine-tuning again to continue from there\n")
STOPPING = ("Interrupted: saving the run at the end of this minibatch, to continue later (interrupt again to "
            "stop at once, losing the training since the last snapshot)\n")
TERMINATING = ("Asked to stop (SIGTERM): saving the run at the end of this minibatch, to continue later (a second "
               "signal stops at once, losing the training since the last snapshot)\n")
HANGING_UP = ("Asked to stop (SIGHUP, as when its terminal closes): saving the run at the end of this minibatch, to "
              "continue later (a second signal stops at once, losing the training since the last snapshot)\n")
LIMIT = 600  # seconds; only stops a hung run (a slow, shared 2-core machine)


@pytest.fixture(autouse=True)
def python_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt), as in a terminal or a Jupyter kernel, whatever the test
    runner set (a runner started in the background ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def whole(base) -> dict:  # noqa: F811
    """The newest training state of the run without Ctrl-C."""
    run = Path(finetune(config(base, "whole", **SETTINGS), progress=False)).parent
    return newest_state(run)[1]


def assert_same_run(a: dict, b: dict) -> None:
    """Two training states hold bit-identical networks, ADA state, path-length mean and random streams."""
    assert a["cur_nimg"] == b["cur_nimg"] and a["batch_idx"] == b["batch_idx"]
    for name in ("G", "G_ema", "D"):
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"
    assert a["ada"]["p"] == b["ada"]["p"] and torch.equal(a["ada"]["accum"], b["ada"]["accum"])
    assert torch.equal(a["pl_mean"], b["pl_mean"]) and torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"])


def kimgs(run: Path) -> list[float]:
    return [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def command(base: dict, run: Path) -> list[str]:  # noqa: F811
    """`toonlib finetune` with `config`'s and SETTINGS' values (the progress bar on, as users have it)."""
    options = {**SETTINGS, "batch_size": 4, "image_seeds": "0-3", "prepare": "none", "data": base["data"],
               "resume": base["base"], "run_dir": run}
    return ["finetune", *(arg for key, value in options.items() for arg in ("--" + key.replace("_", "-"), str(value)))]


def interrupt_at(trainer: Trainer, batch: int, *, twice: bool = False) -> None:
    """Send this process SIGINT (as Ctrl-C does) as `trainer` ends minibatch number `batch` (counted from 1);
    `twice`: a second SIGINT right after it."""
    step = trainer.step

    def step_then_ctrl_c(reals: torch.Tensor) -> None:
        step(reals)
        if trainer.batch_idx == batch:
            for _ in range(1 + twice):
                signal.raise_signal(signal.SIGINT)

    trainer.step = step_then_ctrl_c


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_ctrl_c_on_the_command_line_saves_the_run_and_the_same_command_continues_it(base, whole, tmp_path,  # noqa: F811
                                                                                     stop):
    """SIGTERM (`kill`, `timeout`, a job scheduler) ended a run at once, unsaved and without a word: it stops as one
    Ctrl-C does. SIGHUP (its terminal closed, an ssh connection dropped) did the same until the forty-third session's
    audit (exit 129, the training since the last snapshot lost): it stops as SIGTERM does, and says so where stderr
    still goes (here a file)."""
    if stop is None:
        pytest.skip("no SIGHUP on this platform")
    run = base["root"] / f"command-line-{stop.name}"
    argv = command(base, run)
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:  # a file: a pipe left unread could fill up and stop the run
        proc = subprocess.Popen([sys.executable, "-m", "toonlib", *argv], stdout=subprocess.PIPE, stderr=stderr,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    try:
        deadline = time.monotonic() + LIMIT
        while not (run / "latest.json").is_file():  # the first snapshot is complete (latest.json is written last)
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.05)  # (a bar written to a file shows only every 10 s: `messages.progress_bar`)
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=LIMIT)
    finally:
        proc.kill()
    said = err.read_text()
    assert proc.returncode == 130, said[-3000:]
    assert out == "" and {signal.SIGINT: STOPPING, signal.SIGTERM: TERMINATING}.get(stop, HANGING_UP) in said
    saved = SAVED.search(said)
    assert saved is not None and said.endswith(saved.group(0) + "toonlib finetune: interrupted\n"), said[-3000:]
    kimg, name, nimg = float(saved.group(1)), saved.group(2), int(saved.group(3))
    # the signal may come while the first snapshot ends, after its latest.json: the run stops there, saved at 40
    assert saved.group(4) == str(run) and 40 <= nimg < 200 and nimg % 4 == 0 and nimg == round(kimg * 1000)
    latest = json.loads((run / "latest.json").read_text())
    assert latest == {"kimg": kimg, "network": name, "fakes": f"fakes-{nimg:09d}.png",
                      "state": f"training-state-{nimg:09d}.pt"}
    assert all((run / file).is_file() for file in latest.values() if isinstance(file, str))
    path, state = newest_state(run)
    assert path.name == latest["state"] and state["cur_nimg"] == nimg and kimgs(run)[-1] == kimg
    assert toonlib.cli.main(argv) == 0  # the same command
    assert_same_run(whole, newest_state(run)[1])
    assert kimgs(run) == sorted({*GRID, kimg})


class Terminal:
    """`argv` (python's arguments) run as in a terminal window: in a session of its own whose controlling terminal
    is a pseudo-terminal, which is its stdin, stdout and stderr. `hang_up` closes the window: the kernel sends the
    process SIGHUP, and every write to the terminal fails with EIO from then on. What it wrote is in `output`."""

    def __init__(self, argv: list[str], env: dict, cwd: Path | None = None) -> None:
        import pty

        master, slave = pty.openpty()
        take_terminal = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                         "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
        self.process = subprocess.Popen([sys.executable, "-c", take_terminal, *argv], stdin=slave, stdout=slave,
                                        stderr=slave, env=env, cwd=cwd, start_new_session=True)
        os.close(slave)
        self.output, self._closing = b"", threading.Event()
        # the window reads what is written (a terminal's buffer full would stop the process) until it closes, and
        # closes its end itself: closed from another thread during a read, the end stayed open till the read ended
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, master: int) -> None:
        import select

        try:
            while not self._closing.is_set():
                if select.select([master], [], [], 0.05)[0]:
                    try:
                        self.output += os.read(master, 65536)
                    except OSError:  # the process has ended (EIO: no process has the terminal open)
                        self._closing.wait()
        finally:
            os.close(master)

    def hang_up(self) -> None:
        """Close the window."""
        self._closing.set()
        self._reader.join(10)

    def stop(self) -> None:
        self.hang_up()
        self.process.kill()
        self.process.wait(60)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no terminals that hang up on this platform")
def test_a_closed_terminal_saves_the_run_as_sigterm_does(base, tmp_path):  # noqa: F811
    """Closing the terminal window of `toonlib finetune` (or dropping its ssh connection) ended the run at once, the
    training since its last snapshot lost (forty-third session's audit). It stops as at SIGTERM: the run saved at the
    end of the minibatch, where the same command continues it. Its message and bar write to the closed terminal,
    which fails every write (EIO): the stop goes on, saying nothing, exit status 130."""
    run = tmp_path / "run"
    terminal = Terminal(["-m", "toonlib", *command(base, run)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + LIMIT
        while not (run / "latest.json").is_file():  # the first snapshot, at 40 images
            assert terminal.process.poll() is None and time.monotonic() < deadline, terminal.output[-3000:]
            time.sleep(0.05)
        terminal.hang_up()
        assert terminal.process.wait(LIMIT) == 130
    finally:
        terminal.stop()
    latest = json.loads((run / "latest.json").read_text())
    path, state = newest_state(run)
    # saved where it stopped: at 40 when the hang-up came while the first snapshot ended, after its latest.json
    assert path.name == latest["state"] and 40 <= state["cur_nimg"] < 200, latest
    assert (run / latest["network"]).is_file() and kimgs(run)[-1] == latest["kimg"] == state["cur_nimg"] / 1000


def test_a_stop_between_snapshots_leaves_the_later_ones_on_the_grid(base, whole, capsys):  # noqa: F811
    run = base["root"] / "between"
    trainer = Trainer(config(base, run.name, **SETTINGS), progress=False)
    interrupt_at(trainer, 17)  # 68 images: between the snapshots at 40 and 80, inside each interval
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert capsys.readouterr().err == STOPPING + (
        f"fine-tuning interrupted at 0.068 kimg: saved network-snapshot-000000068.safetensors and the training state "
        f"in {run}; run the same fine-tuning again to continue from there\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sorted(p.name for p in run.glob("training-state-*")) == ["training-state-000000040.pt",
                                                                     "training-state-000000068.pt"]
    assert kimgs(run) == [0.04, 0.068] and (run / "fakes-000000068.png").is_file()
    path = finetune(config(base, run.name, **SETTINGS), progress=False)
    assert path.name == "network-snapshot-000000200.safetensors"
    assert sorted(p.name for p in run.glob("network-snapshot-*")) == [
        f"network-snapshot-{n:09d}.safetensors" for n in (40, 68, 80, 120, 160, 200)]
    assert kimgs(run) == [0.04, 0.068, 0.08, 0.12, 0.16, 0.2]
    assert_same_run(whole, newest_state(run)[1])


@pytest.mark.parametrize("when", ["before", "while"])
def test_ctrl_c_before_or_while_the_quality_metric_leaves_it_out(base, when, capsys):  # noqa: F811
    """The metric takes minutes (1000 Inception passes on the GPU): the snapshot is written without it."""
    run = base["root"] / f"metric-{when}"
    trainer = Trainer(config(base, run.name, **SETTINGS), progress=False)
    computed = []

    def kid() -> dict[str, float]:
        if when == "while":
            signal.raise_signal(signal.SIGINT)
        computed.append(trainer.cur_nimg)
        return {"kid": 0.5}

    trainer.quality = kid
    if when == "before":
        interrupt_at(trainer, 10)  # the minibatch that ends at the first snapshot
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert computed == [] and capsys.readouterr().err == STOPPING + (
        f"fine-tuning interrupted at 0.040 kimg: saved network-snapshot-000000040.safetensors and the training state "
        f"in {run}; run the same fine-tuning again to continue from there\n")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["kimg"] for record in records] == [0.04] and "kid" not in records[0]
    assert newest_state(run)[0].name == "training-state-000000040.pt"


@pytest.mark.parametrize("where", ["minibatch", "snapshot"])
def test_a_second_ctrl_c_stops_at_once_and_the_last_complete_snapshot_stays(base, where, monkeypatch,  # noqa: F811
                                                                            capsys):
    run = base["root"] / f"twice-{where}"
    trainer = Trainer(config(base, run.name, **SETTINGS), progress=False)
    if where == "minibatch":  # while the minibatch finishes
        interrupt_at(trainer, 17, twice=True)
    else:  # while the snapshot at the stop is written
        interrupt_at(trainer, 17)
        save_network = loop.save_network

        def second_ctrl_c(path: Path, *args, **kwargs) -> None:
            if path.name == "network-snapshot-000000068.safetensors":
                signal.raise_signal(signal.SIGINT)
            save_network(path, *args, **kwargs)

        monkeypatch.setattr(loop, "save_network", second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    # and nothing saved since, which it says: the command line said only "interrupted", as if saved (exit status 130:
    # "the run is saved")
    assert capsys.readouterr().err == STOPPING + (
        "fine-tuning stopped at once at 0.068 kimg, not saved there: run the same fine-tuning again to continue from "
        "network-snapshot-000000040.safetensors (0.040 kimg)\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert newest_state(run)[0].name == "training-state-000000040.pt" and kimgs(run) == [0.04]
    assert json.loads((run / "latest.json").read_text())["state"] == "training-state-000000040.pt"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".locks" or "000000068" in p.name]
    resumed = Trainer(config(base, run.name, **SETTINGS), progress=False)
    assert resumed.cur_nimg == 40
    resumed.close()


def test_a_second_ctrl_c_while_the_training_state_is_written_says_the_network_was_saved(base, monkeypatch,  # noqa: F811
                                                                                        capsys):
    """It said "not saved there" while the snapshot's network file was there, complete: only its training state
    is missing, so the run continues from the one before."""
    run = base["root"] / "twice-state"
    trainer = Trainer(config(base, run.name, **SETTINGS), progress=False)
    interrupt_at(trainer, 17)
    save_state = loop.save_state

    def second_ctrl_c(run_dir: Path, state: dict) -> Path:
        if state["cur_nimg"] == 68:
            signal.raise_signal(signal.SIGINT)
        return save_state(run_dir, state)

    monkeypatch.setattr(loop, "save_state", second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert capsys.readouterr().err == STOPPING + (
        "fine-tuning stopped at once at 0.068 kimg, its network saved (network-snapshot-000000068.safetensors) but not "
        "its training state: run the same fine-tuning again to continue from network-snapshot-000000040.safetensors "
        "(0.040 kimg)\n")
    assert (run / "network-snapshot-000000068.safetensors").is_file()
    assert newest_state(run)[0].name == "training-state-000000040.pt"


def test_the_handler_is_the_runs_in_the_main_thread_only_and_put_back(base):  # noqa: F811
    seen, trained = [], [0]

    def one_more_minibatch(callback) -> None:
        trained[0] += 4
        finetune(config(base, "handler", kimg=trained[0] / 1000, snapshot_kimg=0.004), progress=False,
                 callback=callback)

    def record(info: dict) -> None:
        seen.append(signal.getsignal(signal.SIGINT))

    def fail(info: dict) -> None:
        raise RuntimeError("the snapshot viewer failed")

    def mine(signum, frame) -> None:
        pass

    for previous in (signal.default_int_handler, mine, signal.SIG_DFL):
        signal.signal(signal.SIGINT, previous)
        one_more_minibatch(record)
        assert seen[-1] not in (previous, signal.default_int_handler) and signal.getsignal(signal.SIGINT) is previous
        with pytest.raises(RuntimeError, match="viewer failed"):
            one_more_minibatch(fail)
        assert signal.getsignal(signal.SIGINT) is previous
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ignored (a job started in the background): left so
    one_more_minibatch(record)
    assert seen[-1] == signal.SIG_IGN == signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    failures = []

    def in_a_thread() -> None:  # signal.signal raises outside the main thread: nothing is installed there
        try:
            one_more_minibatch(record)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(LIMIT)
    assert not failures and len(seen) == 5 and seen[-1] is signal.default_int_handler


def test_every_process_stops_at_the_minibatch_where_any_was_interrupted(base, capsys):  # noqa: F811
    """Under torchrun each process gets its own SIGINT, maybe a minibatch apart: they agree (`any_true`, an
    all-reduce) after every minibatch. Here the other process was interrupted, this one was not."""
    run = base["root"] / "other-process"
    trainer = Trainer(config(base, run.name, **SETTINGS), progress=False)

    class OtherInterrupted(Distributed):
        def any_true(self, flag: bool) -> bool:
            assert not flag
            return trainer.batch_idx == 5

    trainer.dist = OtherInterrupted()
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert "fine-tuning interrupted at 0.020 kimg: saved network-snapshot-000000020" in capsys.readouterr().err
    assert newest_state(run)[1]["cur_nimg"] == 20


def test_a_second_ctrl_c_before_the_first_snapshot_says_the_run_starts_again(base, capsys):  # noqa: F811
    run = base["root"] / "twice-at-the-start"
    trainer = Trainer(config(base, run.name, **SETTINGS), progress=False)
    interrupt_at(trainer, 2, twice=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert capsys.readouterr().err == STOPPING + (
        "fine-tuning stopped at once at 0.008 kimg, not saved there: run the same fine-tuning again to start it again "
        "(no training state was saved)\n")
    assert newest_state(run) is None


def test_a_stop_in_the_callback_after_a_snapshot_says_it_was_saved_there(base, capsys):  # noqa: F811
    """A notebook's stop (or Ctrl-C) while the callback draws a snapshot's fakes grid: it said "not saved there", then
    to continue from that very snapshot, which was saved with its training state."""
    run = base["root"] / "stopped-in-callback"

    def stop(info: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(config(base, run.name, **SETTINGS), callback=stop, progress=False)
    assert capsys.readouterr().err.endswith(
        "fine-tuning stopped at 0.040 kimg, saved there (network-snapshot-000000040.safetensors and its training "
        "state): run the same fine-tuning again to continue from it\n")
    assert newest_state(run)[1]["cur_nimg"] == 40
    with pytest.raises(KeyboardInterrupt):  # at the run's last snapshot: nothing left to continue
        finetune(config(base, run.name, **{**SETTINGS, "kimg": 0.08}), callback=stop, progress=False)
    assert capsys.readouterr().err.endswith(
        "fine-tuning stopped at 0.080 kimg, saved there (network-snapshot-000000080.safetensors and its training "
        "state), the end of the run\n")


def test_an_output_closed_before_the_first_snapshot_says_nothing_was_saved(base, tmp_path):  # noqa: F811
    """`toonlib finetune ... | head` ended before the run's first snapshot said "the run is saved up to its newest
    snapshot, and the same command continues it", where nothing was saved, not even a run folder (thirty-eighth
    session's audit); after a snapshot it is so."""
    run = tmp_path / "run"

    def closed(*program: str) -> str:
        """The last line on stderr of fine-tuning whose stdout's reader is gone before its first line."""
        proc = subprocess.Popen([sys.executable, "-m", *program, "--data", str(base["data"]), "--resume",
                                 str(base["base"]), "--run-dir", str(run), "--prepare", "none", "--batch-size", "4",
                                 "--kimg", "0.008", "--image-seeds", "0-3", "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ,
                                                                                     "OMP_NUM_THREADS": "1"})
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=LIMIT) == 141, err
        return err.strip().splitlines()[-1]

    stopped = "stopped: its output was closed (the reader of a pipe, such as `| head`, ended)"
    nothing = " before the run's first snapshot: nothing was saved, and the same command starts it again"
    assert closed("toonlib", "finetune") == f"toonlib finetune: {stopped}{nothing}"
    assert closed("toonlib.train") == f"python -m toonlib.train: {stopped}{nothing}"  # torchrun's entry point
    assert newest_state(run) is None
    assert toonlib.cli.main(["finetune", "--data", str(base["data"]), "--resume", str(base["base"]), "--run-dir",
                             str(run), "--prepare", "none", "--batch-size", "4", "--kimg", "0.004", "--image-seeds",
                             "0-3", "--no-progress"]) == 0
    assert closed("toonlib", "finetune") == (f"toonlib finetune: {stopped}; the run is saved up to its newest "
                                             "snapshot, and the same command continues it")
    assert newest_state(run)[1]["cur_nimg"] == 4


def test_an_output_closed_after_the_run_reached_kimg_says_it_is_complete(base, tmp_path, monkeypatch,  # noqa: F811
                                                                         capsys):
    """`| head` closing the output once the run had saved its --kimg snapshot said "the same command continues
    it", which then finds the run done (forty-second session's audit); one closed before still says so."""
    class Closing:
        """stdout whose reader goes away at the line that names `at` (a snapshot's, with --no-progress)."""

        def __init__(self, at: str):
            self.at = at

        def write(self, text: str) -> int:
            if self.at in text:
                raise BrokenPipeError(32, "Broken pipe")
            return len(text)

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            raise OSError("no file")  # not the test's stdout: `output_closed` leaves it as it is

    said = {}
    for at in ("network-snapshot-000000004", "network-snapshot-000000008"):
        monkeypatch.setattr(sys, "stdout", Closing(at))
        assert toonlib.cli.main(["finetune", "--data", str(base["data"]), "--resume", str(base["base"]), "--run-dir",
                                 str(tmp_path / at[-1]), "--prepare", "none", "--batch-size", "4", "--kimg", "0.008",
                                 "--snapshot-kimg", "0.004", "--image-seeds", "0-3", "--no-progress"]) == 141
        said[at] = capsys.readouterr().err.strip().splitlines()[-1]
    stopped = "toonlib finetune: stopped: its output was closed (the reader of a pipe, such as `| head`, ended)"
    assert said == {"network-snapshot-000000004": f"{stopped}; the run is saved up to its newest snapshot, and the "
                                                  "same command continues it",
                    "network-snapshot-000000008": f"{stopped}; the run is complete (its last snapshot is saved)"}
