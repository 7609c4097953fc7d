"""Runs in a run folder: `--resume` of a run folder (issue #10, item 3): the --run-dir folder itself continues
that run; another run's folder starts a new run from the networks of its newest valid training state (a
half-written one is skipped); a folder without a readable training state is a one-line error of the command line
(exit 2). One run at a time in a run folder (a second is refused at once; a killed run leaves it free), and the
data compared as the folder or zip it names, however spelled, from the path recorded resolved.

The tiny 16 px networks, data set and settings of test_train.py, on one CPU thread.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from test_train import base, config, one_thread  # noqa: F401 (fixtures)

import toonlib.cli
import toonlib.commands
import toonlib.train.resume
from toonlib.checkpoints import load_network
from toonlib.train import Trainer, finetune, latest_snapshot, loop, newest_state
from toonlib.train.arguments import main as train_main
from toonlib.train.snapshots import hold_run_dir, write_latest


def cli(base: dict, resume: str, run: Path, *extra: str, data: str | None = None) -> int:  # noqa: F811
    """`toonlib finetune` with test_train's `config` settings (`base`: the fixture's value)."""
    return toonlib.cli.main(["finetune", "--data", str(base["data"]) if data is None else data, "--resume", resume,
                             "--run-dir", str(run), "--prepare", "none", "--batch-size", "4", "--snapshot-kimg",
                             "0.008", "--image-seeds", "0-3", "--no-progress", *extra])


def test_resume_of_the_run_dir_itself_continues_that_run(base):  # noqa: F811
    # A: 4 minibatches in one go. B: 2, then `--resume B --run-dir B` (spelled otherwise) to 4.
    finetune(config(base, "whole", kimg=0.016), progress=False)
    finetune(config(base, "continued", kimg=0.008), progress=False)
    run = base["root"] / "continued"
    assert cli(base, f"{run}/../{run.name}", run, "--kimg", "0.016") == 0
    _, a = newest_state(base["root"] / "whole")
    _, b = newest_state(run)
    assert a["cur_nimg"] == b["cur_nimg"] == 16 and b["batch_idx"] == 4
    for name in ("G", "G_ema", "D"):
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"
    assert torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"]) and a["ada"]["p"] == b["ada"]["p"]
    # The run keeps its base: continuing it again with --resume BASE (or the folder) is not refused.
    assert b["config"]["resume"] == str(base["base"]) == json.loads((run / "config.json").read_text())["resume"]
    assert [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0.008, 0.016]
    assert load_network(run / "network-snapshot-000000016.safetensors").meta["finetune"]["base"] == str(base["base"])


def test_resume_of_another_run_starts_from_its_newest_valid_state(base):  # noqa: F811
    other = Path(finetune(config(base, "other", kimg=0.008, snapshot_kimg=0.004, pl_weight=0), progress=False)).parent
    newest, older = other / "training-state-000000008.pt", other / "training-state-000000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # cut short, as by a full disk
    valid = torch.load(older, map_location="cpu", weights_only=True)
    cfg = config(base, "from-other", resume=str(other), kimg=0.004, snapshot_kimg=0.004, pl_weight=0)
    with pytest.warns(UserWarning, match="unreadable training state .*training-state-000000008.pt"):
        trainer = Trainer(cfg, progress=False)
    for name in ("G_ema", "G", "D"):
        for key, value in getattr(trainer, name).state_dict().items():
            assert torch.equal(value, valid[name][key]), f"{name}.{key}"
    assert trainer.cur_nimg == 0  # a new run, not a continuation of the other one
    origin = {"run": str(other), "state": "training-state-000000004.pt", "kimg": 0.004}
    assert trainer.base_state == origin
    path = trainer.run()
    assert path == Path(cfg.run_dir) / "network-snapshot-000000004.safetensors"
    assert load_network(path).meta["finetune"]["base_state"] == origin
    assert json.loads((Path(cfg.run_dir) / "config.json").read_text())["resume"] == str(other)
    # The new run resumes from its own state, and its snapshots still say where it started.
    path = finetune(config(base, "from-other", resume=str(other), kimg=0.008, snapshot_kimg=0.004, pl_weight=0),
                    progress=False)
    assert path.name == "network-snapshot-000000008.safetensors"
    assert load_network(path).meta["finetune"]["base_state"] == origin


def test_a_folder_without_a_readable_training_state_is_a_one_line_error(base, tmp_path, capsys):  # noqa: F811
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(base, str(empty), tmp_path / "new") == 2  # the run folder itself: a test below
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"toonlib finetune: error: {empty} is a folder")
    assert "no training state in it (training-state-*.pt) could be read" in err
    assert "pass the snapshot file (.safetensors or .pkl) as --resume" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "training-state-000000004.pt").write_bytes(b"PK\x03\x04 cut short")
    (broken / "network-snapshot-000000004.safetensors").write_bytes(base["base"].read_bytes())
    write_latest(broken, {"kimg": 0.004, "network": "network-snapshot-000000004.safetensors"})
    assert cli(base, str(broken), tmp_path / "new") == 2
    warning, error = capsys.readouterr().err.splitlines()  # the command's warning, then its error, a line each
    assert warning.startswith("toonlib finetune: warning: ") and "unreadable training state" in warning
    assert f"e.g. {broken / 'network-snapshot-000000004.safetensors'}" in error
    assert not (tmp_path / "new").exists()


def test_a_run_folder_whose_training_states_are_gone_is_not_restarted_over_its_snapshots(base, capsys):  # noqa: F811
    """Its training states deleted (to save space) or cut short, a run folder restarted from the base without a word,
    replacing its snapshots; its newest state alone deleted, it resumed at the older one, and its later snapshots were
    replaced, also without a word. Refused, naming the snapshot to start a new run from; warned."""
    run = Path(finetune(config(base, "states-gone", kimg=0.016, snapshot_kimg=0.008), progress=False)).parent
    (run / "training-state-000000016.pt").unlink()
    resumed = config(base, run.name, kimg=0.024, snapshot_kimg=0.008)
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(run))}: resuming at 0\.008 kimg, its newest training "
                                         r"state that can be read; its snapshots after it, up to 0\.016 kimg, have "
                                         r"none and are replaced as the run goes on$"):
        Trainer(resumed, progress=False).close()
    (run / "training-state-000000008.pt").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".locks"}  # the run's files
    assert cli(base, str(base["base"]), run, "--kimg", "0.024") == 2
    snapshot = run / "network-snapshot-000000016.safetensors"
    assert capsys.readouterr().err == (
        f"toonlib finetune: error: {run} holds a fine-tuning run's snapshots up to 0.016 kimg but no training state to "
        "continue it from (its training-state-*.pt files are gone or cannot be read), and a new run there would "
        f"replace its snapshots. To fine-tune on from its newest network, start a new run from it in another folder: "
        f"--resume {snapshot} and a new --run-dir; to start over in {run}, empty it first\n")
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".locks"} == before  # none replaced
    (run / "latest.json").write_text('{"kimg": 0.0')  # cut short by a partial sync: all were replaced, silently
    before["latest.json"] = (run / "latest.json").stat().st_mtime_ns
    assert cli(base, str(base["base"]), run, "--kimg", "0.024") == 2
    assert f"--resume {snapshot} and a new --run-dir" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".locks"} == before
    copied = base["root"] / "snapshots-copied"  # the snapshots copied alone, without latest.json: replaced too
    copied.mkdir()
    for name in ("network-snapshot-000000008.safetensors", "network-snapshot-000000016.safetensors"):
        shutil.copy(run / name, copied / name)
    assert cli(base, str(base["base"]), copied, "--kimg", "0.024") == 2
    assert f"--resume {copied / 'network-snapshot-000000016.safetensors'} and a new" in capsys.readouterr().err
    assert cli(base, str(snapshot), base["root"] / "from-its-snapshot", "--kimg", "0.008") == 0  # as it says


# ---------------------------------------------------------------------------------------------
# One run at a time in a run folder

HOLDER = """
import sys
import warnings
from toonlib.train import Trainer, TrainConfig
trainer = Trainer(TrainConfig(data=sys.argv[1], resume=sys.argv[2], run_dir=sys.argv[3], prepare="none", batch_size=4,
                              image_seeds=(0,)), progress=False)
print("holding", flush=True)
sys.stdin.read()  # a fine-tuning run in progress, until the test kills it
"""


def running_trainer(base: dict, run: Path) -> subprocess.Popen:  # noqa: F811
    """Another process whose Trainer holds `run` (as a finetune does while it trains), until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(base["data"]), str(base["base"]), str(run)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    said = (line.strip() for line in iter(proc.stdout.readline, ""))  # after the lines of its images' preparation
    if next((line for line in said if ": preparing " not in line and " prepared in " not in line), "") != "holding":
        proc.kill()
        pytest.fail(f"the holding process failed: {proc.communicate()[1][-3000:]}")
    return proc


def test_a_second_run_in_a_busy_run_folder_is_refused_at_once(base, monkeypatch, capsys):  # noqa: F811
    run = base["root"] / "busy"
    proc = running_trainer(base, run)
    try:
        with monkeypatch.context() as patched:  # refused before any state, model or image is read
            for name in ("newest_state", "_load_base", "ImageDataset"):
                patched.setattr(loop, name, lambda *args, **kwargs: pytest.fail("loaded before the lock"))
            for spelling in (str(run), f"{run}/../{run.name}/"):
                assert cli(base, str(base["base"]), Path(spelling), "--kimg", "0.004") == 2
                assert capsys.readouterr().err == (
                    f"toonlib finetune: error: {Path(spelling)} is in use by another fine-tuning run (process "
                    f"{proc.pid}): wait until it ends or stop it, or train in another run folder (--run-dir)\n")
            with pytest.raises(BlockingIOError, match=f"busy is in use by another fine-tuning run .process {proc.pid}"):
                finetune(config(base, "busy"), progress=False)
    finally:
        proc.kill()  # as a crash would: the OS drops its lock
        proc.communicate()
    assert cli(base, str(base["base"]), run, "--kimg", "0.004") == 0
    _, state = newest_state(run)
    assert state["cur_nimg"] == 4


def test_the_run_folder_is_held_until_the_run_ends_or_fails(base):  # noqa: F811
    run = base["root"] / "held"
    seen = []

    def held_while_training(info: dict) -> None:
        with pytest.raises(BlockingIOError, match="held is in use by another fine-tuning run in this Python process"):
            with hold_run_dir(run):
                pass
        seen.append(info["kimg"])

    trainer = Trainer(config(base, "held", kimg=0.004), progress=False, callback=held_while_training)
    with pytest.raises(BlockingIOError, match=r"held is in use by another fine-tuning run in this Python process "
                                              r"\(a Trainer that has not ended: let its run\(\) end or call its close"):
        finetune(config(base, "held", kimg=0.004), progress=False)
    trainer.close()
    with hold_run_dir(run):  # free after close()
        pass
    assert trainer.run().name == "network-snapshot-000000004.safetensors" and seen == [0.004]  # held it again
    with hold_run_dir(run):  # ... and released it when it ended
        pass

    def fail(info: dict) -> None:
        raise RuntimeError("the snapshot viewer failed")

    with pytest.raises(RuntimeError, match="viewer failed"):
        finetune(config(base, "held", kimg=0.008), progress=False, callback=fail)
    with pytest.raises(ValueError, match=r"--seed \(seed=\): 0 -> 1"):  # a failed start
        Trainer(config(base, "held", seed=1), progress=False)
    with hold_run_dir(run):  # free after both
        pass


# ---------------------------------------------------------------------------------------------
# The data: recorded resolved, compared as the folder or zip it names


def records(run: Path) -> list[str]:
    """The data as the run folder records it: config.json, the newest training state, the newest snapshot."""
    _, state = newest_state(run)
    snapshot = load_network(run / json.loads((run / "latest.json").read_text())["network"])
    return [json.loads((run / "config.json").read_text())["data"], state["config"]["data"],
            snapshot.meta["finetune"]["data"]]


def test_the_data_is_recorded_resolved_and_resumed_however_spelled(base, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(base["root"])
    run = Path("spelled")
    assert cli(base, str(base["base"]), run, "--kimg", "0.004", data="data/") == 0
    assert records(run) == [str(base["data"].resolve())] * 3
    # the run folder too: it was recorded as typed ('spelled'), relative to a folder the run does not record
    assert json.loads((run / "config.json").read_text())["run_dir"] == str(run.resolve())
    assert newest_state(run)[1]["config"]["run_dir"] == str(run.resolve())
    for kimg, spelling in enumerate(("data", f"{base['data']}/", "./data/../data"), start=2):
        assert cli(base, str(base["base"]), run, "--kimg", str(kimg * 0.004), data=spelling) == 0, spelling
    _, state = newest_state(run)
    assert state["cur_nimg"] == 16 and capsys.readouterr().err == ""
    # the same image files elsewhere (a folder moved or copied: another machine, mount or home folder) resume, said;
    # they were refused as other settings, and a moved folder's run could not be continued at all
    shutil.copytree("data", "data-copy")
    os.utime(next(Path("data-copy").iterdir()), ns=(0, 0))  # a copy's times may differ: names and sizes count
    assert cli(base, str(base["base"]), run, "--kimg", "0.02", data="data-copy") == 0
    copy = (base["root"] / "data-copy").resolve()
    assert capsys.readouterr().err == (f"toonlib finetune: warning: spelled: the run's data moved, from "
                                       f"{base['data'].resolve()} to {copy} (the same image files, by name and size): "
                                       "the run goes on with it there\n")
    assert newest_state(run)[1]["config"]["data"] == str(copy)  # and is recorded there
    shutil.copytree("data-copy", "data-other")
    next(Path("data-other").iterdir()).unlink()  # other images: another data set
    assert cli(base, str(base["base"]), run, "--kimg", "0.024", data="data-other") == 2
    err = capsys.readouterr().err
    assert f"(--data: '{copy}' -> '{(base['root'] / 'data-other').resolve()}')" in err


def test_a_run_recorded_with_a_relative_data_path_resumes_from_any_folder(base, tmp_path, monkeypatch,  # noqa: F811
                                                                        capsys):
    """As toonlib recorded the data before: the path as typed, relative to a folder the run does not record. The
    same images (the run's dataset cache holds them) resume from anywhere; others are refused, the message says
    why."""
    monkeypatch.chdir(base["root"])
    run = base["root"] / "relative"
    finetune(config(base, "relative", kimg=0.004), progress=False)
    path, state = newest_state(run)
    state["config"]["data"] = "data/"
    torch.save(state, path)
    (run / "config.json").write_text(json.dumps(state["config"]))
    monkeypatch.chdir(tmp_path)  # another folder
    shutil.copytree(base["data"], "faces")
    with open(next(Path("faces").iterdir()), "ab") as image:
        image.write(b"\0")  # other files than the run's, to its dataset cache and by their sizes
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", data="faces") == 2
    err = capsys.readouterr().err
    assert f"(--data: 'data/' -> '{(tmp_path / 'faces').resolve()}')" in err
    assert "recorded 'data/' relative to the folder it was started in" in err
    assert cli(base, str(base["base"]), run, "--kimg", "0.008") == 0  # the run's images, given from here
    assert records(run) == [str(base["data"].resolve())] * 3  # recorded resolved from now on
    assert newest_state(run)[1]["cur_nimg"] == 8


def test_a_zip_data_set_resumes_however_spelled(base, monkeypatch):  # noqa: F811
    monkeypatch.chdir(base["root"])
    with zipfile.ZipFile("faces.zip", "w") as archive:
        for image in sorted(base["data"].glob("*.png")):
            archive.write(image, image.name)
    run = Path("zipped")
    assert cli(base, str(base["base"]), run, "--kimg", "0.004", data="faces.zip") == 0
    assert records(run) == [str(base["root"].resolve() / "faces.zip")] * 3
    for kimg, spelling in enumerate(("./faces.zip", str(base["root"] / "faces.zip")), start=2):
        assert cli(base, str(base["base"]), run, "--kimg", str(kimg * 0.004), data=spelling) == 0, spelling
    assert newest_state(run)[1]["cur_nimg"] == 12


# ---------------------------------------------------------------------------------------------
# The base model: recorded resolved, compared however spelled


def test_the_base_is_recorded_resolved_and_resumed_however_spelled(base, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(base["root"])
    monkeypatch.setenv("HOME", str(base["root"]))
    run = Path("based")
    assert cli(base, "base.safetensors", run, "--kimg", "0.004") == 0
    resolved = str(base["base"].resolve())
    _, state = newest_state(run)
    assert state["config"]["resume"] == resolved == json.loads((run / "config.json").read_text())["resume"]
    assert load_network(run / "network-snapshot-000000004.safetensors").meta["finetune"]["base"] == resolved
    spellings = ("./base.safetensors", resolved, "~/base.safetensors", f"../{base['root'].name}/base.safetensors")
    for kimg, spelling in enumerate(spellings, start=2):
        assert cli(base, spelling, run, "--kimg", str(kimg * 0.004)) == 0, spelling
    assert newest_state(run)[1]["cur_nimg"] == 20 and capsys.readouterr().err == ""
    # Another run's folder as the base, with and without a trailing slash.
    assert cli(base, "based/", Path("from-based"), "--kimg", "0.004") == 0
    assert cli(base, str(run.resolve()), Path("from-based"), "--kimg", "0.008") == 0
    _, state = newest_state("from-based")
    assert state["config"]["resume"] == str(run.resolve()) and state["base_state"]["run"] == str(run.resolve())
    shutil.copy("base.safetensors", "other.pt")  # another file: refused
    assert cli(base, "other.pt", run, "--kimg", "0.028") == 2
    assert f"(--resume: '{resolved}' -> '{base['root'].resolve() / 'other.pt'}')" in capsys.readouterr().err


def test_a_base_recorded_as_a_relative_path_resumes_from_another_folder(base, tmp_path, monkeypatch,  # noqa: F811
                                                                      capsys):
    """As toonlib recorded --resume before: as typed, relative to a folder the run does not record."""
    run = base["root"] / "relative-base"
    finetune(config(base, "relative-base", kimg=0.004), progress=False)
    path, state = newest_state(run)
    state["config"]["resume"] = "base.safetensors"
    torch.save(state, path)
    monkeypatch.chdir(tmp_path)
    # a file that 'base.safetensors' named from its folder
    assert cli(base, str(base["base"]), run, "--kimg", "0.008") == 0
    assert newest_state(run)[1]["config"]["resume"] == str(base["base"].resolve())
    shutil.copy(base["base"], "other.pt")
    assert cli(base, "other.pt", run, "--kimg", "0.012") == 2
    assert "(--resume: " in capsys.readouterr().err


def test_the_same_command_resumes_with_its_relative_base_gone_and_names_missing_data(base, tmp_path, monkeypatch,  # noqa: F811
                                                                                     capsys):
    """The base file given relative deleted to save space (resuming never reads it), the same command was refused as
    a changed setting, "(--resume: '/abs/mybase.safetensors' -> 'mybase.safetensors') ... restore those settings"; its
    data folder not there (a new machine, Drive not mounted yet), also, hiding "no such folder" (thirty-third
    session's audit)."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(base["base"], "mybase.safetensors")
    shutil.copytree(base["data"], "faces")
    assert cli(base, "mybase.safetensors", Path("runs/toon"), "--kimg", "0.004", data="faces") == 0
    Path("mybase.safetensors").unlink()
    assert cli(base, "mybase.safetensors", Path("runs/toon"), "--kimg", "0.008", data="faces") == 0
    assert newest_state("runs/toon")[1]["cur_nimg"] == 8 and capsys.readouterr().err == ""
    Path("faces").rename("faces-elsewhere")
    assert cli(base, "mybase.safetensors", Path("runs/toon"), "--kimg", "0.012", data="faces") == 2
    assert capsys.readouterr().err == "toonlib finetune: error: no such folder or .zip file: 'faces'\n"
    Path("other.safetensors").touch()  # another base, there or not, is still another setting
    for other in ("other.safetensors", "gone.safetensors"):
        assert cli(base, other, Path("runs/toon"), "--kimg", "0.012", data="faces-elsewhere") == 2
        assert f"(--resume: '{tmp_path.resolve() / 'mybase.safetensors'}' -> " in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Failed starts, interruptions, finished runs


def test_a_run_that_fails_at_its_start_leaves_no_run_folder(base, tmp_path, capsys):  # noqa: F811
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    for i in range(8):
        (unreadable / f"{i}.png").write_bytes(b"not a png")
    (tmp_path / "bad.pkl").write_bytes(b"not a checkpoint")
    run = tmp_path / "runs" / "toon"
    for data, resume in ((str(unreadable), str(base["base"])), (None, str(tmp_path / "bad.pkl"))):
        assert cli(base, resume, run, data=data) == 2
        assert "error: " in capsys.readouterr().err
        assert not run.exists(), sorted(run.rglob("*"))


STAGES = ("save_network", "save_image", "append_metrics", "plot_metrics", "write_latest", "save_state")


@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_during_the_last_snapshot_resumes_exactly(base, stage, monkeypatch):  # noqa: F811
    settings = dict(kimg=0.008, snapshot_kimg=0.004, pl_weight=0)
    whole = base["root"] / "ctrl-c-whole"
    if not whole.exists():
        finetune(config(base, whole.name, **settings), progress=False)
    run = base["root"] / f"ctrl-c-{stage}"
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(stage)
        if len(calls) == 2:  # in the last snapshot
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = getattr(loop, stage)
    with monkeypatch.context() as patched:
        patched.setattr(loop, stage, interrupted)
        with pytest.raises(KeyboardInterrupt):
            finetune(config(base, run.name, **settings), progress=False)
    for name in ("network", "fakes"):  # what latest.json names is there, and whole
        assert (run / json.loads((run / "latest.json").read_text())[name]).is_file()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".locks"]  # no temp files
    path = finetune(config(base, run.name, **settings), progress=False)
    assert path == run / "network-snapshot-000000008.safetensors" == latest_snapshot(run)
    assert [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0.004, 0.008]
    _, a = newest_state(whole)
    _, b = newest_state(run)
    for name in ("G", "G_ema", "D"):
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"


def test_files_cut_short_by_a_killed_run_are_removed_when_it_resumes(base):  # noqa: F811
    run = base["root"] / "killed"
    finetune(config(base, run.name, kimg=0.004), progress=False)
    stale = [run / ".training-state-000000008.pt.0a1b2c3d.tmp", run / ".metrics.png.deadbeef.tmp",
             run / "dataset-cache" / ".data-none16-0123456789abcdef.pt.00ff00ff.tmp"]
    for path in stale:  # what kill -9 leaves in the middle of an atomic write
        path.write_bytes(b"half")
    snapshot = run / ".network-snapshot-000000008.safetensors.0badcafe.tmp"  # a snapshot's save writes in a folder
    snapshot.mkdir()
    (snapshot / "network-snapshot-000000008.safetensors").write_bytes(b"half")
    (snapshot / ".tmpkwc3Z5").write_bytes(b"half")  # safetensors' own temporary file
    stale.append(snapshot)
    kept = [run / ".notes", run / ".keep.tmp", run / "mine.0a1b2c3d.tmp"]
    for path in kept:
        path.write_text("the user's")
    finetune(config(base, run.name, kimg=0.008), progress=False)
    assert not [path for path in stale if path.exists()] and all(path.exists() for path in kept)


def test_torch_fidelitys_file_a_killed_run_left_in_the_metric_cache_is_removed_when_it_resumes(base):  # noqa: F811
    """torch-fidelity saves the real images' features through `tempfile.NamedTemporaryFile` in the metric cache: a
    kill during it left `metric-cache/tmpXXXXXXXX` (as large as the cache) for good (forty-second session's audit)."""
    run = base["root"] / "killed-metric"
    finetune(config(base, run.name, kimg=0.004), progress=False)
    cache = run / "metric-cache"
    cache.mkdir()
    left = cache / "tmpi_75uexh"
    left.write_bytes(b"half")
    kept = [cache / "tmpi_75uexh.pt", cache / "notes.txt", run / "tmpi_75uexh"]  # not torch-fidelity's, or elsewhere
    for path in kept:
        path.write_text("the user's")
    finetune(config(base, run.name, kimg=0.008), progress=False)
    assert not left.exists() and all(path.exists() for path in kept)


def test_unset_values_are_said_in_the_callers_words(base, capsys):  # noqa: F811
    """The command line's range errors offered 'or None (auto)', which it has no word for; Python's keep None
    (forty-second session's audit)."""
    run = base["root"] / "words"
    for option, said in (("--gamma", "--gamma must be >= 0 or left out (auto), got -1.0"),
                         ("--lr", "--lr must be > 0 or left out (auto), got -1.0"),
                         ("--ema-kimg", "--ema-kimg must be >= 0 or left out (auto), got -1.0"),
                         ("--ema-rampup", "--ema-rampup must be > 0 or 'none' (off), got -1.0")):
        assert cli(base, str(base["base"]), run, option, "-1") == 2
        assert capsys.readouterr().err == f"toonlib finetune: error: {said}\n"
    with pytest.raises(ValueError, match=r"^invalid TrainConfig: gamma must be >= 0 or None \(auto\), got -1.0$"):
        config(base, run.name, gamma=-1)
    with pytest.raises(ValueError, match=r"ema_rampup must be > 0 or None \(off\), got -1.0$"):
        config(base, run.name, ema_rampup=-1)
    # a batch_gpu given, then left out: said with the value it takes, not as '--batch-gpu auto'
    assert cli(base, str(base["base"]), run, "--kimg", "0.004", "--batch-gpu", "2", "--ema-kimg", "1") == 0
    capsys.readouterr()
    assert cli(base, str(base["base"]), run, "--kimg", "0.008") == 0
    err = capsys.readouterr().err
    assert err == (f"toonlib finetune: warning: {run}: --batch-gpu left out, so 4, each process's share of the "
                   "minibatch from here on (the run had 2)\n"
                   f"toonlib finetune: warning: {run}: --ema-kimg left out, so 1.25 by NVIDIA's rule from here on (the "
                   "run had 1)\n"), err


def test_metric_images_are_not_said_where_no_metric_is_computed(base, capsys):  # noqa: F811
    """`--metric-images 100` on a resumed CPU run with --metric auto (no metric) was said as a change that has no
    effect; where the metric is computed it is said (forty-second session's audit)."""
    run = base["root"] / "no-metric"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004") == 0
    capsys.readouterr()
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--metric-images", "100") == 0
    assert capsys.readouterr().err == ""
    state = newest_state(run)[1]
    cfg = config(base, run.name, metric="kid", metric_images=50)
    state["config"]["metric"] = "kid"  # the state at 0.008 kimg has 100
    with pytest.warns(UserWarning, match=r"--metric-images 50 \(metric_images=50\) from here on \(the run had "
                                         r"100\)"):
        toonlib.train.resume.say_changed_settings(state, cfg)


def test_a_run_keeps_one_dataset_cache_and_says_how_its_images_changed(base, tmp_path):  # noqa: F811
    """Images added between resumes made a new cache beside the old one, each a full copy of the data set; and the
    run went on with other images without a word, which is not "as if it had not stopped"."""
    data = tmp_path / "faces"
    shutil.copytree(base["data"], data)
    run = base["root"] / "growing"
    finetune(config(base, run.name, kimg=0.004, data=str(data)), progress=False)
    first = sorted((run / "dataset-cache").iterdir())
    images = sorted(data.glob("*.png"))
    shutil.copy(images[0], data / "added.png")
    images[1].unlink()
    images[2].unlink()
    shutil.copy(images[3], images[4])  # replaced: another size or time
    os.utime(images[4], ns=(1, 1))
    with pytest.warns(UserWarning, match=rf"^the images in {data} changed since the run's last snapshot \(1 added, "
                                         r"2 removed, 1 replaced; 63 files now\): the run goes on with the images "
                                         "there now$"):
        finetune(config(base, run.name, kimg=0.008, data=str(data)), progress=False)
    second = sorted((run / "dataset-cache").iterdir())
    assert len(first) == len(second) == 1 and first != second


def test_the_same_images_uploaded_again_are_no_change_to_a_resumed_run(base, tmp_path):  # noqa: F811
    """Notebook 01 on a new Colab runtime uploads the same images again (new file times): the resumed run said they had
    all been replaced and prepared them all again. A training state records their contents' digests too."""
    data = tmp_path / "faces"
    shutil.copytree(base["data"], data)
    run = base["root"] / "uploaded-again"
    finetune(config(base, run.name, kimg=0.004, data=str(data)), progress=False)
    (cache,) = (run / "dataset-cache").iterdir()
    written = cache.stat().st_mtime_ns
    for image in data.glob("*.png"):
        os.utime(image, ns=(1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "changed since the run's last snapshot (64 replaced ...)"
        finetune(config(base, run.name, kimg=0.008, data=str(data)), progress=False)
    assert [cache] == list((run / "dataset-cache").iterdir()) and cache.stat().st_mtime_ns == written  # kept


def test_a_resumed_run_with_too_few_images_left_says_they_were_removed(base, tmp_path):  # noqa: F811
    """It said only "found 3 usable images ...; need at least 8", as if the folder had never held more."""
    data = tmp_path / "faces"
    shutil.copytree(base["data"], data)
    run = base["root"] / "shrunk"
    finetune(config(base, run.name, kimg=0.004, data=str(data)), progress=False)
    for image in sorted(data.glob("*.png"))[3:]:
        image.unlink()
    for image in data.glob("*.png"):  # those left uploaded again (new times): no change ("3 replaced")
        os.utime(image, ns=(1, 1))
    with pytest.raises(ValueError, match=rf"^found 3 usable images in '{data}'; need at least 8\. "
                                         rf"The images in {data} changed since the run's last snapshot \(61 removed; 3 "
                                         r"files now\): put back those it trained on, or add others$"):
        finetune(config(base, run.name, kimg=0.008, data=str(data)), progress=False)
    with pytest.raises(ValueError, match=r"need at least 8$"):  # a new run: nothing was removed from it
        finetune(config(base, "new-on-three", kimg=0.004, data=str(data)), progress=False)


def test_a_resumed_runs_fixed_settings_are_named_as_the_caller_gives_them(base, capsys):  # noqa: F811
    """The notebook's (Python's) message named them as options alone: 'runs/toon holds a run started with other
    settings (--batch-size: 4 -> 8) ... use a new run folder, --run-dir'."""
    run = base["root"] / "fixed"
    finetune(config(base, run.name, kimg=0.004), progress=False)
    with pytest.raises(ValueError, match=r"other settings \(--batch-size \(batch_size=\): 4 -> 8\)\. A resumed run .* "
                                         r"use a new run folder \(--run-dir, run_dir=\); --kimg"):
        finetune(config(base, run.name, kimg=0.008, batch_size=8), progress=False)
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--batch-size", "8") == 2
    err = capsys.readouterr().err
    assert "other settings (--batch-size: 4 -> 8). A resumed run" in err and "new run folder (--run-dir); " in err, err
    with pytest.raises(SystemExit) as exited:  # `python -m toonlib.train`, torchrun's: it printed Python's words
        train_main(["--data", str(base["data"]), "--resume", str(base["base"]), "--run-dir", str(run), "--prepare",
                    "none", "--batch-size", "8", "--kimg", "0.008", "--no-progress"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "(--batch-size: 4 -> 8)" in err and "(--run-dir); " in err, err


# ---------------------------------------------------------------------------------------------
# Where a run folder may be and what it takes: not in the data, nothing outside it; a full disk; changed settings


def test_a_run_folder_inside_the_data_folder_is_refused_before_anything_is_written(base, tmp_path,  # noqa: F811
                                                                                   capsys):
    """It trained on its own fakes and plots when it resumed (they were taken for training images)."""
    data = tmp_path / "faces"
    shutil.copytree(base["data"], data)
    for run, where in ((data / "run", "is inside"), (data, "is"), (data / "runs" / "toon", "is inside")):
        assert cli(base, str(base["base"]), run, "--kimg", "0.004", data=str(data)) == 2
        assert capsys.readouterr().err == (
            f"toonlib finetune: error: --run-dir {run} {where} the data folder {data}: the run's images (fakes, "
            f"metrics.png) would become training images. Put the run folder elsewhere, e.g. {tmp_path}/runs/faces, or "
            "the images in a folder of their own (--data)\n")
    assert sorted(p.name for p in data.rglob("*")) == sorted(p.name for p in base["data"].iterdir())  # nothing new
    with pytest.raises(ValueError, match=rf"^--run-dir {data}/run \(run_dir='{data}/run'\) is inside the data"):
        finetune(config(base, "unused", data=str(data), run_dir=str(data / "run")), progress=False)
    # another run's folder given as the data (--data for --resume): its fakes grids and plot were trained on
    other = tmp_path / "runs" / "a"
    finetune(config(base, "unused", run_dir=str(other), kimg=0.004), progress=False)
    assert cli(base, str(base["base"]), tmp_path / "runs" / "b", "--kimg", "0.004", data=str(other)) == 2
    assert capsys.readouterr().err == (
        f"toonlib finetune: error: --data {other} is a fine-tuning run's folder, whose images (fakes grids, "
        f"metrics.png) are no training faces: give the folder of your faces; to go on from that run, give it as "
        f"--resume {other}\n")
    assert not (tmp_path / "runs" / "b" / "network-snapshot-000000004.safetensors").exists()
    # a model given as the data: a torch .pt is a zip, read as one holding no images ("their names end in .jpg, ...")
    model = tmp_path / "toon model.pt"
    torch.save({"G_ema": {}}, model)
    from toonlib.train.loop import _is_checkpoint

    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as archive:  # images beside a data.pkl: a data set
        archive.writestr("faces/data.pkl", b"notes")
        archive.writestr("faces/version", b"3")
        archive.write(next(base["data"].iterdir()), "faces/0.png")
    assert not _is_checkpoint(tmp_path / "faces.zip") and _is_checkpoint(model)
    for given in (model, base["base"]):
        assert cli(base, str(base["base"]), tmp_path / "runs" / "c", "--kimg", "0.004", data=str(given)) == 2
        assert capsys.readouterr().err == (
            f"toonlib finetune: error: --data {given} is a model checkpoint, not training images: give the folder or "
            f".zip of your faces; to start from that model, give it as --resume {given}\n")


def test_a_run_writes_nothing_outside_its_folder_and_a_refused_one_nothing(base, tmp_path, capsys):  # noqa: F811
    """The lock was `.locks/<name>.lock` beside the run folder: left there for good by every run, refused and deleted
    ones too, and a read-only parent refused a writable run folder."""
    parent = tmp_path / "runs"
    parent.mkdir()
    run = parent / "toon"
    finetune(config(base, "unused", run_dir=str(run), kimg=0.004), progress=False)
    assert [p.name for p in parent.iterdir()] == ["toon"]
    assert (run / ".locks" / "run.lock").is_file() and not (run / ".locks" / "run.holder").exists()
    empty = parent / "empty"
    empty.mkdir()
    for folder in (parent / "refused", empty):  # refused after the base model was read
        assert cli(base, str(base["base"]), folder, "--freeze-d", "99") == 2
        assert "--freeze-d 99 asks for more layers" in capsys.readouterr().err
    assert sorted(p.name for p in parent.rglob("*") if p.parent != run and run not in p.parents) == ["empty", "toon"]


def full_disk_while(stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the `stage` of the second snapshot (the first for the dataset cache) fail as a full disk does: torch's
    writes (dataset cache, training state) and latest.json's through /dev/full, safetensors' with its own error's
    text. latest.json fails once the second training state is written (and in the next run's sync too)."""
    from safetensors import SafetensorError

    from toonlib import data
    from toonlib.train import snapshots

    module, name = {"dataset cache": (data, "atomic_write_path"), "network": (loop, "save_network"),
                    "training state": (snapshots, "atomic_write_path"),
                    "latest.json": (snapshots, "atomic_write_path")}[stage]
    original = getattr(module, name)

    def full(path: Path, *args, **kwargs):
        if stage == "network" and path.name.endswith("8.safetensors"):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        if stage == "latest.json":
            full = path.name == "latest.json" and (path.parent / "training-state-000000008.pt").is_file()
        else:
            full = stage == "dataset cache" or path.name.endswith("8.pt")
        if full:
            return contextlib.nullcontext(Path("/dev/full"))  # writes fail with ENOSPC
        return original(path, *args, **kwargs)

    monkeypatch.setattr(module, name, full)


FULL = "toonlib finetune: error: no space left on the device while saving"
AGAIN = "free space and run the same command again to"
FROM_4 = (f"{AGAIN} continue from network-snapshot-000000004.safetensors (0.004 kimg), the last snapshot saved with "
          "its training state")
# what each stage of the second snapshot says (the dataset cache: before the first): what was written, and where the
# same command continues from; it said "to continue from network-snapshot-000000004.safetensors" whatever was written
FULL_SAID = {
    "dataset cache": f"the run to {{run}}: {AGAIN} start it again (no snapshot was saved)",
    "network": f"the snapshot at 0.008 kimg to {{run}}, before any of its files was written: {FROM_4}",
    "training state": ("the snapshot at 0.008 kimg to {run}: network-snapshot-000000008.safetensors, "
                       "fakes-000000008.png, its metrics.jsonl line and metrics.png were written, but not its training "
                       f"state, so the run cannot continue from that snapshot; {FROM_4}"),
    "latest.json": ("the snapshot at 0.008 kimg to {run}: its files and its training state were written but "
                    "latest.json was not updated (the run continues from that snapshot all the same); "
                    f"{AGAIN} continue from network-snapshot-000000008.safetensors (0.008 kimg), the last snapshot "
                    "saved with its training state"),
}


def whole_run(base: dict) -> Path:  # noqa: F811
    """The run of `cli(..., "--kimg", "0.008", "--snapshot-kimg", "0.004")` without a full disk."""
    run = base["root"] / "full-whole"
    if not run.exists():
        assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 0
    return run


def assert_same_networks(a: Path, b: Path) -> None:
    _, one = newest_state(a)
    _, other = newest_state(b)
    assert one["cur_nimg"] == other["cur_nimg"]
    for name in ("G", "G_ema", "D"):
        for key, value in one[name].items():
            assert torch.equal(value, other[name][key]), f"{name}.{key}"
    assert torch.equal(one["rng"][0]["cpu"], other["rng"][0]["cpu"]) and one["augment_p"] == other["augment_p"]


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
@pytest.mark.parametrize("stage", list(FULL_SAID))
def test_a_full_disk_is_one_line_and_the_same_command_continues(base, stage, monkeypatch, capsys):  # noqa: F811
    """It was a traceback (safetensors' or torch's 'unexpected pos'), and latest.json named a training state that
    was never written. The line says what of the snapshot was written and what was not, and the same command
    continues from the last snapshot saved with its training state, as the uninterrupted run."""
    whole = whole_run(base)
    capsys.readouterr()
    run = base["root"] / f"full-{stage.replace(' ', '-')}"
    with monkeypatch.context() as patched:
        full_disk_while(stage, patched)
        assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 2
    assert capsys.readouterr().err == f"{FULL} {FULL_SAID[stage].format(run=run)}\n"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".locks"]  # no temp files
    if stage in ("network", "training state"):
        assert json.loads((run / "latest.json").read_text())["state"] == "training-state-000000004.pt"
        assert newest_state(run)[0].name == "training-state-000000004.pt"
    if stage == "training state":  # what it says was written is there, and whole
        assert load_network(run / "network-snapshot-000000008.safetensors").meta["finetune"]["kimg"] == 0.008
        assert (run / "fakes-000000008.png").is_file()
        assert [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0.004, 0.008]
    if stage == "latest.json":
        assert json.loads((run / "latest.json").read_text())["state"] == "training-state-000000004.pt"
        assert newest_state(run)[0].name == "training-state-000000008.pt"
    with pytest.raises(OSError) as raised:  # the API's error says so too, and has its errno
        with monkeypatch.context() as patched:
            full_disk_while(stage, patched)
            finetune(config(base, run.name, kimg=0.008, snapshot_kimg=0.004), progress=False)
    assert raised.value.errno == errno.ENOSPC and str(raised.value).startswith("no space left on the device")
    if stage == "latest.json":  # the next run stopped as it pointed latest.json at the state it resumes from
        assert str(raised.value) == (f"no space left on the device while saving the run to {run}: {AGAIN} continue "
                                     "from network-snapshot-000000008.safetensors (0.008 kimg), the last snapshot "
                                     "saved with its training state")
    capsys.readouterr()
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 0  # space again
    out = capsys.readouterr().out
    assert newest_state(run)[1]["cur_nimg"] == 8 and latest_snapshot(run).name.endswith("8.safetensors")
    assert [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0.004, 0.008]
    if stage in ("network", "training state"):  # resumed at 0.004 kimg: one snapshot trained and saved, at 0.008
        assert [line.split(" [")[0] for line in out.splitlines() if line.startswith("fine-tuning")] == [
            "fine-tuning 0.008/0.008 kimg"]
    assert_same_networks(run, whole)


def test_a_full_disk_at_the_first_training_state_says_the_network_was_written(base, monkeypatch,  # noqa: F811
                                                                              capsys):
    """The training state of the run's first snapshot did not fit (a 2 MB disk): the network snapshot, the fakes and
    the metrics were written, and the line said "(no snapshot was saved)". It says what was written and that the same
    command starts the run again (a network without its training state is no point a run continues from), which it
    does, ending as the uninterrupted run. The disk is full as torch writes into the atomic write's file."""
    from toonlib.train import snapshots

    whole = whole_run(base)
    capsys.readouterr()
    run = base["root"] / "full-first-state"
    save = torch.save

    def full(obj: object, file, *args, **kwargs) -> None:
        if "training-state-000000004.pt" in str(getattr(file, "name", file)):
            file.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(obj, file, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(snapshots.torch, "save", full)
        assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 2
    assert capsys.readouterr().err == (
        f"{FULL} the snapshot at 0.004 kimg to {run}: network-snapshot-000000004.safetensors, fakes-000000004.png, its "
        "metrics.jsonl line and metrics.png were written, but not its training state, so the run cannot continue "
        f"from that snapshot; {AGAIN} start it again from the beginning (no training state was saved)\n")
    assert load_network(run / "network-snapshot-000000004.safetensors").meta["finetune"]["kimg"] == 0.004
    assert (run / "fakes-000000004.png").is_file() and not (run / "latest.json").exists()
    assert newest_state(run) is None
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".locks"]  # no temp files
    with pytest.raises(OSError) as raised:  # the API says the same, with the errno
        with monkeypatch.context() as patched:
            patched.setattr(snapshots.torch, "save", full)
            finetune(config(base, run.name, kimg=0.008, snapshot_kimg=0.004), progress=False)
    assert raised.value.errno == errno.ENOSPC and "start it again from the beginning" in str(raised.value)
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 0  # space again
    out = capsys.readouterr().out
    assert [line.split(" [")[0] for line in out.splitlines() if line.startswith("fine-tuning")] == [
        "fine-tuning 0.004/0.008 kimg", "fine-tuning 0.008/0.008 kimg"]  # from the start
    assert [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0.004, 0.008]
    assert_same_networks(run, whole)
    for nimg in (4, 8):  # the network rewritten as the uninterrupted run's
        a = load_network(run / f"network-snapshot-{nimg:09d}.safetensors")
        b = load_network(whole / f"network-snapshot-{nimg:09d}.safetensors")
        assert all(torch.equal(x, y) for x, y in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values()))


def test_a_full_disk_message_says_what_of_the_snapshot_was_written(tmp_path):
    """Every point of a snapshot where the disk can fill up (`snapshots.disk_full_message`), and where the run
    continues from: its newest training state, else the start (no snapshot at all, or networks without states)."""
    from toonlib.train.snapshots import SnapshotWrites, disk_full_message

    run = tmp_path / "run"
    run.mkdir()
    said = lambda *written: disk_full_message(run, "no space left on the device",  # noqa: E731
                                              SnapshotWrites(12, list(written)))
    start = f"no space left on the device while saving the snapshot at 0.012 kimg to {run}"
    assert said() == f"{start}, before any of its files was written: {AGAIN} start it again (no snapshot was saved)"
    (run / "network-snapshot-000000012.safetensors").write_bytes(b"written")
    assert said("network") == (f"{start}: network-snapshot-000000012.safetensors was written, but not its training "
                               f"state, so the run cannot continue from that snapshot; {AGAIN} start it again from "
                               "the beginning (no training state was saved)")
    (run / "training-state-000000008.pt").write_bytes(b"written")
    then = (f"{AGAIN} continue from network-snapshot-000000008.safetensors (0.008 kimg), the last snapshot saved with "
            "its training state")
    assert said("network", "fakes", "metrics") == (
        f"{start}: network-snapshot-000000012.safetensors, fakes-000000012.png and its metrics.jsonl line were "
        f"written, but not its training state, so the run cannot continue from that snapshot; {then}")
    assert disk_full_message(run, "the disk quota is used up", None) == (
        f"the disk quota is used up while saving the run to {run}: {then}")


def test_settings_changed_on_resume_are_said(base, capsys):  # noqa: F811
    """A resumed run took another --gamma (or went back to auto) without a word."""
    run = base["root"] / "changed"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004") == 0
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--gamma", "5", "--ema-rampup", "0.05") == 0
    # an unset --gamma said as left out, with its value: "--gamma auto", which --gamma refuses, was suggested
    # (forty-second session's audit); --ema-rampup's 'none' is typed so
    assert capsys.readouterr().err == (f"toonlib finetune: warning: {run}: --gamma 5 from here on (the run had no "
                                       "--gamma: 0.0128 by NVIDIA's rule)\n"
                                       f"toonlib finetune: warning: {run}: --ema-rampup 0.05 from here on (the run had "
                                       "none)\n")
    assert cli(base, str(base["base"]), run, "--kimg", "0.012") == 0  # the first command again
    assert capsys.readouterr().err == (f"toonlib finetune: warning: {run}: --gamma left out, so 0.0128 by NVIDIA's "
                                       "rule from here on (the run had 5)\n"
                                       f"toonlib finetune: warning: {run}: --ema-rampup none from here on (the run had "
                                       "0.05)\n")
    assert cli(base, str(base["base"]), run, "--kimg", "0.016") == 0 and capsys.readouterr().err == ""
    # settings of several numbers, which kept their Python form: "--betas 0.5 0.99 (betas=(0.5, 0.99))"
    assert cli(base, str(base["base"]), run, "--kimg", "0.020", "--betas", "0.5", "0.99", "--image-seeds", "0-2") == 0
    assert capsys.readouterr().err == (f"toonlib finetune: warning: {run}: --betas 0.5 0.99 from here on (the run "
                                       "had 0 0.99)\n"
                                       f"toonlib finetune: warning: {run}: --image-seeds 0-2 from here on (the run had "
                                       "0-3)\n")


def test_a_kimg_already_reached_is_said_and_changes_nothing(base):  # noqa: F811
    run = base["root"] / "reached"
    finetune(config(base, run.name, kimg=0.008), progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".locks"}  # the lock's holder record
    for kimg, said in ((0.004, "asks for less"), (0.008, "is done")):
        with pytest.warns(UserWarning, match=rf"{run} has trained 0.008 kimg.*to {kimg} kimg {said}.*larger --kimg"):
            path = finetune(config(base, run.name, kimg=kimg), progress=False)
        assert path == run / "network-snapshot-000000008.safetensors"
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".locks"} == before
    with warnings.catch_warnings(record=True) as caught:  # "--gamma 5 from here on" beside "nothing to train"
        warnings.simplefilter("always")
        finetune(config(base, run.name, kimg=0.008, gamma=5.0), progress=False)
    said = [str(warning.message) for warning in caught]
    assert len(said) == 1 and "has trained 0.008 kimg" in said[0], said
    assert said[0].endswith("give a larger --kimg (kimg=)")  # the command line's words: "--kimg" alone (below)
    assert toonlib.commands.for_command_line(said[0]).endswith("give a larger --kimg")  # was "(kimg= in Python)"


def test_a_finished_run_reads_no_image(base, tmp_path, capsys):  # noqa: F811
    """The same command again on a finished run (to see its commands; 01's Run All) prepared every image again
    (minutes with `align`), replaced the run's dataset cache and said "the run goes on with the images there now"
    where images had been added since; with the data folder gone, it failed (thirty-third session's audit)."""
    data = shutil.copytree(base["data"], tmp_path / "faces")
    run = tmp_path / "done"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004", data=str(data)) == 0
    capsys.readouterr()
    cache = {p.name: p.stat().st_mtime_ns for p in (run / "dataset-cache").iterdir()}
    shutil.copy(next(data.iterdir()), data / "added.png")
    for moved in (False, True):
        if moved:
            data.rename(tmp_path / "elsewhere")
        assert cli(base, str(base["base"]), run, "--kimg", "0.004", data=str(data)) == 0
        out, err = capsys.readouterr()
        assert err == (f"toonlib finetune: warning: {run} has trained 0.004 kimg, so the run to 0.004 kimg is done: "
                       "nothing to train. To train on, give a larger --kimg\n") and "toonlib blend --toon" in out
        assert {p.name: p.stat().st_mtime_ns for p in (run / "dataset-cache").iterdir()} == cache


def test_the_same_command_again_after_the_run_is_done(base):  # noqa: F811
    """A run ends on the minibatch that reaches --kimg (0.006 kimg at 4 images a minibatch: 0.008), and the same
    command again said that it "asks for less"."""
    run = base["root"] / "done-again"
    finetune(config(base, run.name, kimg=0.006), progress=False)
    with pytest.warns(UserWarning, match=rf"{run} has trained 0.008 kimg, so the run to 0.006 kimg is done: nothing"):
        assert finetune(config(base, run.name, kimg=0.006), progress=False).name.endswith("8.safetensors")


def test_a_resumed_runs_progress_bar_counts_from_where_it_resumed(base, capsys):  # noqa: F811
    """tqdm took the rate as (n * unit_scale - initial) / elapsed, images counted and shown in kimg: a resumed run's bar
    showed a negative time left before its rate was measured, and always in its last line when it stopped early
    (Ctrl-C, an error): `0.408/20.000 kimg [00:06<-00:02, ...`."""
    run = base["root"] / "bar"
    finetune(config(base, run.name, kimg=0.008, snapshot_kimg=0.004), progress=False)
    capsys.readouterr()

    def stop(info: dict) -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        finetune(config(base, run.name, kimg=1000, snapshot_kimg=0.004), callback=stop)
    lines = capsys.readouterr().err.replace("\r", "\n").split("\n")
    bars = [line for line in lines if line.startswith("fine-tuning:")]
    assert re.match(r"fine-tuning: +0%\|.*\| 0.012/1000.000 kimg \[\d\d:\d\d<\d[\d:]*\d, G=", bars[-1]), bars
    assert all("<-" not in line for line in bars), bars


def test_the_model_resolution_given_or_not_is_the_same_run(base, capsys):  # noqa: F811
    """--resolution is the model's whether given or not, and a resumed run was refused when it gave it and the run
    had not, or the other way round: "--resolution: None -> 16"."""
    for run, first, then in (("res-given", None, 16), ("res-unset", 16, None)):
        finetune(config(base, run, kimg=0.004, resolution=first), progress=False)
        path = finetune(config(base, run, kimg=0.008, resolution=then), progress=False)
        assert path.name == "network-snapshot-000000008.safetensors"
        assert "resolution" not in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"other settings \(--resolution \(resolution=\): 16 -> 32\)"):  # not "None"
        finetune(config(base, "res-given", kimg=0.012, resolution=32), progress=False)


def test_a_kimg_below_one_image_trains_one_minibatch(base, capsys):  # noqa: F811
    path = finetune(config(base, "under-one-image", kimg=0.0001), progress=False)  # 0.1 images
    assert path.name == "network-snapshot-000000004.safetensors"
    # said: "training to 0.004 kimg" for --kimg 0.0001, and 0.012 for 0.01, was left unexplained
    started = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{path.parent}: ")]
    assert started[0] == (f"{path.parent}: started, training to 0.004 kimg, --kimg 0.0001 rounded up to whole "
                          "minibatches of 4 (a line per snapshot)")


def test_a_new_run_in_a_folder_of_other_files_says_so(base, tmp_path):  # noqa: F811
    """A folder of photos given as the run folder took the run's snapshots, fakes and metrics without a word."""
    folder = tmp_path / "my-photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"a photo")
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(folder))} holds 1 file \(e\.g\. holiday\.jpg\) and no "
                                         r"fine-tuning run: the run's snapshots, fakes and metrics go in among them"):
        Trainer(config(base, str(folder), kimg=0.004), progress=False).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the folder holds a run now: resumed without the warning; a new one neither
        Trainer(config(base, str(folder), kimg=0.004), progress=False).close()
        Trainer(config(base, str(tmp_path / "new"), kimg=0.004), progress=False).close()


def test_the_commands_a_finished_run_prints_blend_below_the_models_resolution(tmp_path):
    """The printed commands said --swap-res 32 whatever the model: for a 32 px model that is every layer the toon
    model's, no blend; for a smaller one, refused."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network
    from toonlib.train.arguments import finished

    for resolution, swap in ((16, 8), (32, 16), (64, 32), (256, 32)):
        G = tiny_generator(0, img_resolution=resolution, channel_base=256)
        path = save_network(tmp_path / f"{resolution}.safetensors", G)
        assert finished(path).count(f"--swap-res {swap} ") == 2, finished(path)
    from conftest import FIXTURES

    shutil.copy(FIXTURES / "ada_tiny.pkl", tmp_path / "nvidia.pkl")  # not toonlib's file: the default
    assert finished(tmp_path / "nvidia.pkl").count("--swap-res 32 ") == 2


def test_a_damaged_metrics_log_is_said_and_the_run_goes_on(base, capsys):  # noqa: F811
    """metrics.jsonl cut short (a partial sync) stopped every resume with json's "Unterminated string starting at:
    line 1 column 143" naming no file; a line of JSON that is no record, with a traceback (exit 1)."""
    finetune(config(base, "damaged-log", kimg=0.008), progress=False)
    run = base["root"] / "damaged-log"
    log = run / "metrics.jsonl"
    whole = log.read_text()
    log.write_text(whole + "NaN\n" + whole[:40] + "\n")
    capsys.readouterr()
    assert cli(base, str(base["base"]), run, "--kimg", "0.016") == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "metrics.jsonl" in line]
    assert said == [f"toonlib finetune: warning: {log}: left out 2 lines that are no record (line 2, 3): the run's "
                    "log, written anew without them"]  # once
    assert [json.loads(line)["kimg"] for line in log.read_text().splitlines()] == [0.008, 0.016]


def test_a_done_run_whose_snapshot_was_deleted_says_so(base, capsys):  # noqa: F811
    """Snapshots deleted to free space: the same command again printed `blend` and `toonify` commands naming the
    missing file (with --swap-res 32 for a 16 px model: its resolution could not be read); `finetune()` returned the
    missing file's path, with only the warning that the run is done (thirty-third session's audit)."""
    run = base["root"] / "deleted"
    assert cli(base, str(base["base"]), run, "--kimg", "0.008") == 0
    assert "toonlib blend --toon" in capsys.readouterr().out
    for snapshot in run.glob("network-snapshot-*.safetensors"):
        snapshot.unlink()
    assert cli(base, str(base["base"]), run, "--kimg", "0.008") == 2
    said = capsys.readouterr()
    gone = (f"{run / 'network-snapshot-000000008.safetensors'}, the last snapshot of the run in {run}, is not there "
            "any more (deleted?): give a larger --kimg (kimg=) to train on and write a new one")
    assert said.out == "" and said.err.endswith(f"error: {gone.replace(' (kimg=)', '')}\n")  # as it is typed
    with pytest.warns(UserWarning, match="is done"), pytest.raises(FileNotFoundError) as missing:
        finetune(config(base, "deleted", kimg=0.008), progress=False)
    assert str(missing.value) == gone


def test_a_resumed_runs_device_is_said_as_typed_and_only_where_it_changed(base, capsys):  # noqa: F811
    """It said '--device cpu (--device cpu) from here on (the run had auto)', naming the option twice and an unset
    device as 'auto', which --device refuses; on a machine without a GPU, where both are the CPU (thirty-eighth
    session's audit)."""
    run = base["root"] / "device"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004") == 0
    capsys.readouterr()
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--device", "cpu") == 0
    here = f"toonlib finetune: warning: {run}: "
    unset = "no --device: CUDA when available, else the CPU"
    assert capsys.readouterr().err == (f"{here}--device cpu from here on (the run had {unset})\n"
                                       if torch.cuda.is_available() else "")
    assert cli(base, str(base["base"]), run, "--kimg", "0.012", "--device", "cpu:0") == 0  # the same CPU (review)
    assert capsys.readouterr().err == ""

    def started_on_another_machine() -> None:  # a GPU this machine lacks
        path, state = newest_state(run)
        state["config"]["device"] = "cuda:63"
        torch.save(state, path)

    started_on_another_machine()
    assert cli(base, str(base["base"]), run, "--kimg", "0.016", "--device", "cpu") == 0
    assert capsys.readouterr().err == f"{here}--device cpu from here on (the run had cuda:63)\n"
    started_on_another_machine()
    assert cli(base, str(base["base"]), run, "--kimg", "0.020") == 0
    now = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert capsys.readouterr().err == f"{here}--device left out, so {now} from here on (the run had cuda:63)\n"
    started_on_another_machine()
    with pytest.warns(UserWarning) as said:  # Python's words
        finetune(config(base, run.name, kimg=0.024, device="cpu"), progress=False)
    assert [str(w.message) for w in said] == [f"{run}: --device cpu (device='cpu') from here on (the run had "
                                              "cuda:63)"]


def test_a_resumed_run_whose_images_are_all_gone_says_no_preparing_line(base, tmp_path, capsys):  # noqa: F811
    """`--no-progress` said "preparing 0 images ... 0 images prepared in 0 s" before the error (thirty-eighth
    session's audit)."""
    data = tmp_path / "faces"
    shutil.copytree(base["data"], data)
    run = base["root"] / "emptied"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004", data=str(data)) == 0
    capsys.readouterr()
    for image in data.glob("*.png"):
        image.unlink()
    (data / "notes.txt").write_text("no image")
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", data=str(data)) == 2
    said = capsys.readouterr()
    assert said.out == "" and said.err.startswith(f"toonlib finetune: error: found 0 usable images in '{data}'")


def test_a_run_with_freeze_g_prints_commands_that_blend_above_it(base, tmp_path, capsys):  # noqa: F811
    """With --freeze-g (README's --freeze-g 32) the commands a finished run printed blended at the default swap
    resolution, at or below the frozen blocks, which are the base's: they gave back the base itself, and `blend` said
    nothing (fortieth session's audit)."""
    run = tmp_path / "frozen"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004", "--freeze-g", "8", "--freeze-mapping") == 0
    out = capsys.readouterr().out
    assert out.count("--swap-res 16 ") == 2 and out.endswith(  # 16 px: no blend between, said
        "(the run kept the base model's blocks up to 8 px, --freeze-g 8: a blend at 8 px or below is the base model "
        "itself, and at 16 px, the model's resolution, the whole toon model)\n"), out
    snapshot = run / "network-snapshot-000000004.safetensors"
    assert toonlib.cli.main(["blend", "--toon", str(snapshot), "--swap-res", "8", "-o", str(tmp_path / "b.safetensors")]
                            ) == 0  # the swap resolution it printed
    assert capsys.readouterr().err == (
        "toonlib blend: warning: the low-res (toon) model keeps the high-res (base) model's synthesis blocks up to 8 "
        "px unchanged (as fine-tuning with --freeze-g 8 does), and a blend at --swap-res 8 takes only those from it: "
        "the blend draws the base model's faces, not toons. Give a swap resolution above 8 px, such as 16\n")
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network
    from toonlib.train.arguments import finished

    for resolution, freeze_g, swap in ((64, 8, 32), (64, 16, 32), (128, 32, 64), (64, 32, 64), (256, 0, 32)):
        folder = tmp_path / f"{resolution}-{freeze_g}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"freeze_g": freeze_g}))
        path = save_network(folder / "network-snapshot-000000004.safetensors",
                            tiny_generator(0, img_resolution=resolution, channel_base=256))
        said = finished(path)
        assert said.count(f"--swap-res {swap} ") == 2, said
        assert ("--freeze-g" in said) == (freeze_g >= 32), said  # said where the swap resolution is raised


def test_the_commands_a_finished_run_prints_ask_for_the_base_where_it_is_gone(base, tmp_path, capsys):  # noqa: F811
    """The base file deleted after the run (resuming never reads it), the commands a finished run printed failed: "...
    records its base ..., which is not there (moved or deleted) ... name the model it was fine-tuned from (--base)"
    (fortieth session's audit)."""
    copied = shutil.copy(base["base"], tmp_path / "mybase.safetensors")
    run = tmp_path / "run"
    assert cli(base, str(copied), run, "--kimg", "0.004") == 0
    assert "--base" not in capsys.readouterr().out  # the recorded base is taken
    Path(copied).unlink()
    assert cli(base, str(copied), run, "--kimg", "0.004") == 0  # done: the commands again
    out = capsys.readouterr().out
    assert out.count(" --base BASE --swap-res 8 ") == 2 and out.endswith(
        f"(the base the run recorded, {copied}, is not there (moved or deleted): put it back, or give the model the "
        "run was fine-tuned from as BASE)\n"), out


def read_only_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock's holder record of a run folder cannot be removed, as in a folder that became read-only."""
    unlink = Path.unlink

    def refused(path: Path, *args, **kwargs) -> None:
        if path.name == "run.holder":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refused)


def test_a_run_folder_that_becomes_read_only_says_which_snapshot_and_where_the_run_continues(
        base, monkeypatch, capsys):  # noqa: F811
    """A run folder remounted read-only mid-run (ext4's errors=remount-ro, a share withdrawn) said "error:
    .../.locks/run.holder: read-only file system": the lock's record, whose removal failed as the run ended, and not
    the snapshot that could not be written nor where the same command continues (fortieth session's audit)."""
    from toonlib.files import _cannot_write

    run = base["root"] / "read-only-mid-run"
    save = loop.save_network

    def read_only(path, *args, **kwargs):
        if path.name == "network-snapshot-000000008.safetensors":  # the second snapshot's first file
            raise _cannot_write(path, OSError(errno.EROFS, os.strerror(errno.EROFS)), os.strerror(errno.EROFS))
        return save(path, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(loop, "save_network", read_only)
        read_only_holder(patched)
        assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 2
    assert capsys.readouterr().err == (
        f"toonlib finetune: error: the file system became read-only while saving the snapshot at 0.008 kimg to {run}, "
        f"before any of its files was written: make {run} writable again and run the same command again to continue "
        "from network-snapshot-000000004.safetensors (0.004 kimg), the last snapshot saved with its training state\n")
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", "--snapshot-kimg", "0.004") == 0  # as it says
    assert newest_state(run)[1]["cur_nimg"] == 8


def test_a_resumed_run_given_the_values_it_resolved_says_no_change(base, capsys):  # noqa: F811
    """Resuming a run started with the defaults, with the values it had resolved (--lr 0.0025, --ema-kimg 1.25 at
    batch 4, --batch-gpu 4, --gamma 0.0128 at 16 px and batch 4, --metric none on the CPU, where auto is none), said
    "--lr 0.0025 from here on (the run had auto)" for each, though nothing changed (fortieth session's audit)."""
    run = base["root"] / "resolved-again"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004") == 0
    capsys.readouterr()
    same = ["--lr", "0.0025", "--ema-kimg", "1.25", "--batch-gpu", "4", "--gamma", "0.0128"]
    same += [] if torch.cuda.is_available() else ["--metric", "none"]
    assert cli(base, str(base["base"]), run, "--kimg", "0.008", *same) == 0
    assert capsys.readouterr().err == ""
    assert cli(base, str(base["base"]), run, "--kimg", "0.012", "--lr", "0.002", "--batch-gpu", "2") == 0  # changes
    assert capsys.readouterr().err == (f"toonlib finetune: warning: {run}: --batch-gpu 2 from here on (the run had 4)\n"
                                       f"toonlib finetune: warning: {run}: --lr 0.002 from here on (the run had "
                                       "0.0025)\n")


def test_the_train_modules_errors_name_the_program(base, tmp_path, capsys):  # noqa: F811
    """`python -m toonlib.train` (torchrun's entry point) said "error: found 3 usable images ..." naming no program,
    in a torchrun log among other programs' lines (fortieth session's audit)."""
    few = tmp_path / "few"
    few.mkdir()
    for image in sorted(base["data"].iterdir())[:3]:
        shutil.copy(image, few)
    with pytest.raises(SystemExit) as exited:
        train_main(["--data", str(few), "--resume", str(base["base"]), "--run-dir", str(tmp_path / "run"),
                    "--prepare", "none", "--batch-size", "4", "--no-progress"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"python -m toonlib.train: error: found 3 usable images in '{few}'; need at "
                                       "least 8\n")


# ---------------------------------------------------------------------------------------------
# Forty-fourth session's audit


def test_a_trainers_own_loop_snapshots(base):  # noqa: F811
    """`Trainer.snapshot()` outside `run()` (a loop of one's own: step, then snapshot) was an AttributeError naming
    `tick_start` (forty-fourth session's audit); a Trainer of a finished run (which reads no image) snapshots too."""
    run = base["root"] / "own-loop"
    trainer = Trainer(config(base, "own-loop", kimg=0.008), progress=False)
    reals = torch.stack([trainer.dataset[i] for i in range(4)])
    trainer.step(reals)
    info = trainer.snapshot()
    assert info["network"] == run / "network-snapshot-000000004.safetensors" and info["network"].is_file()
    assert info["sec_per_kimg"] > 0 and json.loads((run / "latest.json").read_text())["kimg"] == 0.004
    assert trainer.run() == run / "network-snapshot-000000008.safetensors"  # it goes on from there

    done = Trainer(config(base, "own-loop", kimg=0.004), progress=False)  # trained past its kimg: reads no image
    assert done.dataset is None
    done.step(reals)
    assert done.snapshot()["network"] == run / "network-snapshot-000000012.safetensors"
    done.close()
    _, state = newest_state(run)
    assert state["cur_nimg"] == 12 and len(state["data_files"]) == 64


def test_a_trainer_whose_run_ended_cannot_snapshot_into_a_folder_another_holds(base):  # noqa: F811
    """A Trainer whose run() had ended (its folder released) wrote its snapshot and latest.json into the folder that
    another Trainer held: two writers in one run folder (forty-fourth session's audit). Its snapshot() holds the
    folder as run() does, and releases it after."""
    run = base["root"] / "stale"
    trainer = Trainer(config(base, "stale", kimg=0.008), progress=False)
    assert trainer.run() == run / "network-snapshot-000000008.safetensors"  # released
    other = Trainer(config(base, "stale", kimg=0.016), progress=False)  # takes the folder
    trainer.step(torch.stack([trainer.dataset[i] for i in range(4)]))
    with pytest.raises(BlockingIOError, match=r"stale is in use by another fine-tuning run in this Python process"):
        trainer.snapshot()
    assert json.loads((run / "latest.json").read_text())["kimg"] == 0.008
    assert not (run / "network-snapshot-000000012.safetensors").exists()
    other.close()
    assert trainer.snapshot()["network"] == run / "network-snapshot-000000012.safetensors"  # free: taken, released
    with hold_run_dir(run):
        pass


def test_a_training_image_cut_short_is_said_as_the_photo_commands_say_it(base, tmp_path, capsys):  # noqa: F811
    """A PNG cut short was skipped with Pillow's words, "cannot read: image file is truncated", where `toonlib align`
    says what it is and what to do (forty-fourth session's audit)."""
    data = tmp_path / "data"
    shutil.copytree(base["data"], data)
    (data / "05.png").write_bytes((data / "05.png").read_bytes()[:60])
    assert cli(base, str(base["base"]), tmp_path / "run", "--kimg", "0.004", data=str(data)) == 0
    err = capsys.readouterr().err
    assert ("\n  05.png: the PNG file is cut short (a download or copy that did not finish?): download or copy it "
            "again\n") in err, err


def test_an_unfinished_run_in_a_folder_that_cannot_be_written_says_to_continue_a_copy(base, tmp_path, monkeypatch,  # noqa: F811
                                                                                     capsys):
    """A run folder on a read-only disk (or another user's) was refused with "Read-only file system" alone; a copy of
    it given as --run-dir continues the run (forty-fourth session's audit)."""
    run = tmp_path / "run"
    assert cli(base, str(base["base"]), run, "--kimg", "0.004") == 0
    capsys.readouterr()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as patched:
        patched.setattr("toonlib.train.snapshots.file_lock", read_only)
        assert cli(base, str(base["base"]), run, "--kimg", "0.008") == 2
    assert capsys.readouterr().err == (
        f"toonlib finetune: error: cannot write in the run folder {run}: Read-only file system; make it writable, or "
        "copy the run folder to a place you can write and give the copy as --run-dir: the run continues there\n")
    shutil.copytree(run, tmp_path / "copy")
    assert cli(base, str(base["base"]), tmp_path / "copy", "--kimg", "0.008") == 0
    assert [line["kimg"] for line in map(json.loads, (tmp_path / "copy" / "metrics.jsonl").read_text().splitlines())
            ] == [0.004, 0.008]


def test_resume_naming_the_new_run_folder_itself_says_it_takes_the_model(base, tmp_path, capsys):  # noqa: F811
    """`--resume runs/toon --run-dir runs/toon` of a folder without a run said "... pass the snapshot file as resume
    (--resume)": the Python name beside the option's, and not the likely mix-up (forty-fourth session's audit)."""
    empty = tmp_path / "toon"
    empty.mkdir()
    assert cli(base, str(empty), empty) == 2
    assert capsys.readouterr().err == (
        f"toonlib finetune: error: --resume names the run folder {empty} itself, which holds no fine-tuning run yet "
        "to continue: --resume takes the model to start from, such as ffhq-256-noaug or a checkpoint file "
        "(.safetensors or .pkl)\n")
    with pytest.raises(ValueError, match=r"^--resume \(resume=\) names the run folder .* \(resume=\) takes the model"):
        Trainer(config(base, "toon", resume=str(empty), run_dir=str(empty)), progress=False)
    assert list(empty.iterdir()) == []
