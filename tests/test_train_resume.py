"""`--resume` of a run folder (issue #10, item 3): the --run-dir folder itself continues that run; another
run's folder starts a new run from the networks of its newest valid training state (a half-written one is
skipped); a folder without a readable training state is a one-line error of the command line (exit 2).

The tiny 16 px networks, data set and settings of test_train.py, on one CPU thread.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import base, config, one_thread  # noqa: F401 (fixtures)

import toonlib.cli
from toonlib.checkpoints import load_network
from toonlib.train import Trainer, finetune, newest_state
from toonlib.train.snapshots import write_latest


def cli(base: dict, resume: str, run: Path, *extra: str) -> int:  # noqa: F811 (the fixture's value)
    """`toonlib finetune` with test_train's `config` settings."""
    return toonlib.cli.main(["finetune", "--data", str(base["data"]), "--resume", resume, "--run-dir", str(run),
                             "--prepare", "none", "--batch-size", "4", "--snapshot-kimg", "0.008",
                             "--image-seeds", "0-3", "--no-progress", *extra])


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
    for resume, run in ((empty, tmp_path / "new"), (empty, empty)):
        assert cli(base, str(resume), run) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"toonlib finetune: error: {empty} is a folder")
        assert "no training state in it (training-state-*.pt) could be read" in err
        assert "pass the snapshot file (.safetensors or .pkl) as resume (--resume)" in err
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
