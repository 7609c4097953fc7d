"""The console script, run as users run it (a subprocess), and its error handling."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import FIXTURES

from toonlib.checkpoints import load_network


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toonlib", *args], capture_output=True, text=True, timeout=120,
                          env=None if env is None else {**os.environ, **env})


def main_cli(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """`toonlib ARGS` in this process, as `run_cli` gives it (status, stdout, stderr), without a cold start of its own:
    11 of them made one test 94 s under load (forty-fifth session's timing audit)."""
    from toonlib.cli import main

    capsys.readouterr()  # what came before
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["toonlib", *args], status, out, err)


def test_convert_then_load_gives_identical_outputs(tmp_path):
    out = tmp_path / "ada.safetensors"
    result = run_cli("convert", str(FIXTURES / "ada_tiny.pkl"), str(out))
    assert result.returncode == 0, result.stderr
    assert "nvidia checkpoint: 32x32" in result.stdout and "G_ema + G + D" in result.stdout
    original, converted = load_network(FIXTURES / "ada_tiny.pkl"), load_network(out)
    z = torch.randn(2, 64)
    with torch.no_grad():
        assert torch.equal(original.G_ema(z, None), converted.G_ema(z, None))


def test_info_and_clear_error_without_traceback(tmp_path):
    result = run_cli("info", str(FIXTURES / "ada_tiny.pkl"))
    assert result.returncode == 0 and "conv_clamp: 256" in result.stdout
    bad = tmp_path / "page.pkl"
    bad.write_text("<html>quota exceeded</html>")
    result = run_cli("convert", str(bad), str(tmp_path / "out.safetensors"))
    assert result.returncode == 2
    assert "web page, not a network" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_blend_command_writes_network_and_grid(tmp_path):
    from PIL import Image
    from tiny import tiny_generator

    from toonlib.blending import blend
    from toonlib.checkpoints import save_network

    toon, base = tiny_generator(1), tiny_generator(0)
    save_network(tmp_path / "toon.safetensors", toon)
    save_network(tmp_path / "base.safetensors", base)
    result = run_cli("blend", "--toon", str(tmp_path / "toon.safetensors"), "--base",
                     str(tmp_path / "base.safetensors"),
                     "--swap-res", "8", "--blend-width", "0.5", "-o", str(tmp_path / "b.safetensors"),
                     "--grid", str(tmp_path / "grid.png"), "--seeds", "0-2")
    assert result.returncode == 0, result.stderr
    expected = blend(toon, base, 8, blend_width=0.5).state_dict()
    got = load_network(tmp_path / "b.safetensors").G_ema.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    assert Image.open(tmp_path / "grid.png").height > 3 * 32
    # its columns' bar, ended complete: the base, a blend at 4, 8, 16 and 32 px (a smooth switch), the toon
    assert re.search(r"grid: 100%\|[^\n]*\| 6/6 \[", result.stderr), result.stderr  # minutes of silence at 1024 px
    result = run_cli("info", str(tmp_path / "b.safetensors"))  # which models and setting made it: not on record
    assert result.stdout.splitlines()[1] == (f"blend of {tmp_path / 'toon.safetensors'} up to 8 px (level 0), "
                                             f"{tmp_path / 'base.safetensors'} above; smooth switch, width 0.5")
    result = run_cli("blend", "--low", str(tmp_path / "toon.safetensors"), "--high", str(FIXTURES / "ada_tiny.pkl"),
                     "--swap-res", "8", "-o", str(tmp_path / "bad.safetensors"))
    assert result.returncode == 2 and "different architectures" in result.stderr
    assert "No --base was given" not in result.stderr  # a base was named
    from toonlib.models import MODELS

    cache = tmp_path / "cache"  # no --base: the default base, here a 32 px model of another architecture
    cache.mkdir()
    shutil.copy(FIXTURES / "ada_tiny.pkl", cache / MODELS["ffhq-1024-tf"].filename)
    result = run_cli("blend", "--toon", str(tmp_path / "toon.safetensors"), "--swap-res", "8", "-o",
                     str(tmp_path / "bad.safetensors"), env={"TOONLIB_CACHE": str(cache)})
    assert result.returncode == 2 and "different architectures" in result.stderr, result.stderr
    assert result.stderr.endswith("No --base was given, so the base was toonlib's default, 'ffhq-1024-tf': name the "
                                  "base the toon model was fine-tuned from with --base.\n"), result.stderr


def test_models_lists_registry_and_cache(tmp_path):
    """A file in a model's place that `fetch` would download again (here a copy cut short) is "damaged": it was
    listed as cached."""
    from toonlib.models import MODELS

    (tmp_path / MODELS["ffhq-1024-tf"].filename).write_bytes((FIXTURES / "ada_tiny.pkl").read_bytes()[:1000])
    shutil.copy(FIXTURES / "ada_tiny.pkl", tmp_path / MODELS["ffhq-1024-noaug"].filename)  # no published size
    result = run_cli("models", "--cache-dir", str(tmp_path))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    column = next(x for x in lines if x.startswith("NAME")).index("CACHED")
    cached = {x.split()[0]: x[column:column + 7].strip() for x in lines
              if x.startswith(("ffhq-1024-tf ", "ffhq-1024 ", "ffhq-1024-noaug "))}
    assert cached == {"ffhq-1024-tf": "damaged", "ffhq-1024": "-", "ffhq-1024-noaug": "cached"}
    assert "toonify-blended-tf" in result.stdout


def test_models_says_what_the_files_take_and_the_caches_other_files(tmp_path):
    """`toonlib models` said whether a file was here, not how much disk it took, and the cache's files it does not
    list (downloaded by URL, partial downloads) were nowhere: a user freeing space had to look in the folder."""
    from toonlib.models import MODELS

    shutil.copy(FIXTURES / "ada_tiny.pkl", tmp_path / MODELS["ffhq-1024-noaug"].filename)
    (tmp_path / "drive-1abc").write_bytes(b"x" * 2_500_000)
    (tmp_path / ".locks").mkdir()  # the cache's own bookkeeping: not a file a user put there
    result = run_cli("models", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(x for x in lines if x.startswith("NAME"))
    size = {x.split()[0]: x[header.index("CACHED") + 7:header.index("DESCRIPTION")].strip() for x in lines
            if x.startswith(("ffhq-1024 ", "ffhq-1024-noaug "))}
    tiny = (FIXTURES / "ada_tiny.pkl").stat().st_size
    assert size == {"ffhq-1024": "", "ffhq-1024-noaug": f"{tiny / 1e3:.0f} kB"}
    assert f"on this machine: 1 of these files, {tiny / 1e3:.0f} kB\n" in result.stdout
    assert ("the cache also holds drive-1abc (2.50 MB) (downloaded by URL or put there)\n" in result.stdout)
    assert "`toonlib remove NAME` deletes it, to free the space." in result.stdout
    (tmp_path / "drive-1abc").unlink()
    (tmp_path / "ffhq.pkl.part").write_bytes(b"x" * 1500)
    (tmp_path / "ffhq.pkl.part.source").write_text('{"source": "https://example.com/ffhq.pkl"}')  # its record
    (tmp_path / "e4e.pt.part.gdown").mkdir()  # a Drive file's partial download: its bytes in gdown's folder (they
    (tmp_path / "e4e.pt.part.gdown" / "e4e.pt.partab12cd34.part").write_bytes(b"x" * 5_000_000)  # went unsaid)
    (tmp_path / "e4e.pt.part.source").write_text('{"source": "gdrive:abc"}')
    result = run_cli("models", "--cache-dir", str(tmp_path))
    assert "the cache also holds e4e.pt.part (5.00 MB), ffhq.pkl.part (1.54 kB) (partial downloads, resumed by the " \
           "next fetch)\n" in result.stdout
    (tmp_path / "anime.parts-v2.safetensors").write_bytes(b"x" * 2000)  # a file of its own, ".part" in its name
    result = run_cli("models", "--cache-dir", str(tmp_path))
    assert "anime.parts-v2.safetensors (2.00 kB), e4e.pt.part (5.00 MB), ffhq.pkl.part (1.54 kB) (downloaded by URL " \
           "or put there; .part: partial downloads)\n" in result.stdout


def test_a_truncated_safetensors_file_is_said_to_be_cut_short(tmp_path):
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    whole = tmp_path / "toon.safetensors"
    save_network(whole, tiny_generator(0))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:3000])  # inside the header: an interrupted download
    result = run_cli("info", str(cut))
    assert result.returncode == 2 and result.stderr.startswith(f"toonlib info: error: {cut} is a safetensors file cut "
                                                               "short: its header alone is "), result.stderr
    assert ("bytes, the whole file 3000. A truncated download or a damaged file: delete it and download, copy"
            in result.stderr)


def test_fine_tuning_without_progress_bars_says_when_it_prepares_images(tmp_path):
    """`finetune --no-progress` printed nothing while its images were prepared (minutes with `--prepare align`): a
    line says it starts and one that it ended; a resumed run reading its prepared images from the cache says none."""
    import re

    import numpy as np
    from PIL import Image

    data = tmp_path / "faces"
    data.mkdir()
    for i in range(8):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    run = tmp_path / "run"
    command = ("finetune", "--data", str(data), "--resume", str(FIXTURES / "ada_tiny.pkl"), "--run-dir", str(run),
               "--no-progress")
    result = run_cli(*command, "--kimg", "0.008")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{data}: preparing 8 images ('crop' at 32 px)"
    assert re.fullmatch(re.escape(f"{data}: 8 images prepared in ") + r"\d+ s", lines[1]), lines[1]
    assert lines[2].startswith(f"{run}: started, training to 0.008 kimg"), lines[2]
    result = run_cli(*command, "--kimg", "0.016")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(f"{run}: resumed at 0.008 kimg"), result.stdout


def test_info_tells_where_weights_came_from_and_a_run_folder_is_pointed_to_its_snapshot(tmp_path, capsys):
    """`toonlib info` of a fine-tuning snapshot or a converted file printed the architecture only, though the file
    records its history; a run folder given where a checkpoint is meant said only "is a folder" (`--resume` takes
    run folders, `blend --toon` a snapshot)."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "faces"
    data.mkdir()
    for i in range(8):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    run = tmp_path / "run"
    # The training run in its own process (the installed `python -m toonlib`), the other commands in this one
    result = run_cli("finetune", "--data", str(data), "--resume", str(FIXTURES / "ada_tiny.pkl"), "--run-dir", str(run),
                     "--kimg", "0.008", "--no-progress")
    assert result.returncode == 0, result.stderr
    snapshot = run / "network-snapshot-000000008.safetensors"
    result = main_cli(capsys, "info", str(snapshot))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (f"fine-tuned from {FIXTURES / 'ada_tiny.pkl'} on {data}, 0.008 kimg "
                                             "(8 images shown)")
    result = main_cli(capsys, "blend", "--toon", str(run), "--base", str(FIXTURES / "ada_tiny.pkl"), "--swap-res",
                      "8", "-o", str(tmp_path / "b.safetensors"))
    assert result.returncode == 2 and result.stderr == (
        f"toonlib blend: error: --toon {run}: {run} is a folder, not a checkpoint file: for the fine-tuning run there, "
        f"give its newest snapshot, {snapshot}\n")
    nvidia_run = tmp_path / "00000-faces-auto2"  # stylegan2-ada-pytorch's run folder: its snapshots, numbered by kimg
    nvidia_run.mkdir()
    for kimg in ("000200", "001000", "000800"):
        (nvidia_run / f"network-snapshot-{kimg}.pkl").write_bytes((FIXTURES / "ada_tiny.pkl").read_bytes())
    result = main_cli(capsys, "info", str(nvidia_run))
    assert result.returncode == 2 and result.stderr == (
        f"toonlib info: error: {nvidia_run} is a folder, not a checkpoint file: for the training run there, give its "
        f"newest snapshot, {nvidia_run / 'network-snapshot-001000.pkl'}\n")
    state = run / "training-state-000000008.pt"  # it listed the state's keys as "not a known StyleGAN2 checkpoint"
    result = main_cli(capsys, "blend", "--toon", str(state), "--base", str(FIXTURES / "ada_tiny.pkl"), "--swap-res",
                      "8", "-o", str(tmp_path / "b.safetensors"))
    assert result.returncode == 2 and result.stderr == (
        f"toonlib blend: error: {state} is the training state of a fine-tuning run (what `toonlib finetune` resumes "
        f"from), not a network: give the run's newest snapshot, {snapshot}\n")
    converted = tmp_path / "ada.safetensors"
    assert main_cli(capsys, "convert", str(FIXTURES / "ada_tiny.pkl"), str(converted)).returncode == 0
    result = main_cli(capsys, "info", str(converted))
    assert result.stdout.splitlines()[1] == f"converted from {FIXTURES / 'ada_tiny.pkl'} (nvidia format)"
    # a blend or a conversion written over the run's snapshot replaced its G and D without a word
    before = snapshot.read_bytes()
    blend_onto = ["blend", "--toon", str(converted), "--base", str(converted), "--swap-res", "8", "-o"]
    for command, said in ((blend_onto, "-o"), (["convert", str(FIXTURES / "ada_tiny.pkl")], "the output")):
        result = main_cli(capsys, *command, str(snapshot))
        assert result.returncode == 2 and result.stderr.endswith(
            f"error: {said} {snapshot} is a snapshot of the fine-tuning run in {run} (its G, G_ema and D): writing "
            "there would replace it; give another output file\n"), result.stderr
    assert snapshot.read_bytes() == before
    copied = tmp_path / "copy.safetensors"  # a copy of a snapshot elsewhere is any file: replaced as asked
    for _ in range(2):
        assert main_cli(capsys, "convert", str(snapshot), str(copied)).returncode == 0


def test_a_blend_remade_from_the_names_info_shows(tmp_path):
    """`toonlib info` names a generator of a file that holds two as "toon.pkl (G)"; given back to --toon / --base as
    shown, it said 'no checkpoint at toon.pkl (G)'. Now it names that generator, and the remade blend is the same."""
    from tiny import tiny_generator

    from toonlib.checkpoints import Networks, save_network

    both = save_network(tmp_path / "both.safetensors", Networks(G_ema=tiny_generator(0), G=tiny_generator(1)))
    first = tmp_path / "first.safetensors"
    result = run_cli("blend", "--toon", str(both), "--toon-network", "G", "--base", str(both), "--swap-res", "8",
                     "-o", str(first))
    assert result.returncode == 0, result.stderr
    shown = run_cli("info", str(first)).stdout.splitlines()[1]
    assert shown == f"blend of {both} (G) up to 8 px (level 0), {both} (G_ema) above; hard switch"
    toon, base = shown.removeprefix("blend of ").split(" up to ")[0], shown.split("), ")[1].split(" above")[0]
    again = tmp_path / "again.safetensors"
    result = run_cli("blend", "--toon", toon, "--base", base, "--swap-res", "8", "-o", str(again))
    assert result.returncode == 0, result.stderr
    remade, made = load_network(again).G_ema.state_dict(), load_network(first).G_ema.state_dict()
    assert all(torch.equal(remade[k], v) for k, v in made.items())
    assert run_cli("info", str(again)).stdout.splitlines()[1] == shown
    result = run_cli("blend", "--toon", toon, "--toon-network", "G_ema", "--base", base, "--swap-res", "8",
                     "-o", str(tmp_path / "no.safetensors"))
    assert result.returncode == 2 and "names its file's G, but G_ema was asked for" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "no.safetensors").exists()


def test_fetch_of_a_local_file_says_what_fetch_is_for():
    """`toonlib fetch ffhq.pkl` of a file here said "unknown model 'ffhq.pkl'" and listed 30 names."""
    result = run_cli("fetch", str(FIXTURES / "ada_tiny.pkl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"toonlib fetch: error: {FIXTURES / 'ada_tiny.pkl'} is a file here: fetch "
                                     "downloads registry names (`toonlib models`) and http(s) URLs into the cache; "
                                     "a local file is read as it is where a model is asked for (--toon, --base)")


def test_convert_of_one_generator_of_a_file_is_refused_in_command_line_words(tmp_path, capsys):
    """`toonlib convert "toon.pkl (G)" out` (the name info's blend line and blend records print) was refused with
    Python's advice, "load_generator('toon.pkl (G)') reads that generator" (forty-first session's audit)."""
    from toonlib.cli import main

    source = shutil.copy(FIXTURES / "ada_tiny.pkl", tmp_path / "toon.pkl")
    assert main(["convert", f"{source} (G)", str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err == (f"toonlib convert: error: '{source} (G)' names the G of {source}, and convert writes every network "
                   f"of a file: give {source} (its G is converted with the others)\n")
    assert not (tmp_path / "out.safetensors").exists()


def test_info_says_when_the_mean_w_was_estimated(tmp_path, capsys):
    """A rosinality file without `latent_avg` (and a pSp / e4e decoder) gets a mean w estimated from its mapping
    network, which truncation pulls towards: info did not say so (forty-first session's audit)."""
    from toonlib.cli import main

    state = torch.load(FIXTURES / "rosinality_tiny.pt", weights_only=True)
    torch.save({key: value for key, value in state.items() if key != "latent_avg"}, tmp_path / "no_avg.pt")
    said = "mean w (the centre of truncation): estimated from its mapping network; the file records none of its own"
    assert main(["info", str(tmp_path / "no_avg.pt")]) == 0
    assert said in capsys.readouterr().out.splitlines()
    assert main(["info", str(FIXTURES / "rosinality_tiny.pt")]) == 0
    assert said not in capsys.readouterr().out


def test_blend_refuses_a_swap_res_above_the_toon_before_comparing_the_pair(tmp_path):
    """Python's blend(toon_path, base_path, 64) of 32 px models loaded both and warned of their lineage before it
    refused a setting it could check once the toon was loaded (forty-first session's audit; the command line checks it
    first)."""
    from tiny import tiny_generator

    from toonlib.blending import blend
    from toonlib.checkpoints import save_network

    save_network(tmp_path / "toon.safetensors", tiny_generator(1))
    save_network(tmp_path / "base.safetensors", tiny_generator(0))  # unrelated: a lineage warning, once compared
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^swap_res 64 is above the 32 px of the toon model"):
            blend(tmp_path / "toon.safetensors", tmp_path / "base.safetensors", 64)


def test_info_shows_the_discriminators_config(tmp_path, capsys):
    """A file with a D (a fine-tuning base, a snapshot) said "+ D" on its first line and nothing of D's architecture,
    which fine-tuning trains (forty-first session's audit): info shows D's config under its own heading."""
    from toonlib.cli import main

    assert main(["info", str(FIXTURES / "ada_tiny.pkl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    d = lines.index("discriminator (D):")
    assert lines[1] == "generator:" and "  use_noise: True" in lines[2:d]
    assert "  mbstd_group_size: 4" in lines[d:] and "  conv_clamp: 256.0" in lines[d:]
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    save_network(tmp_path / "g.safetensors", tiny_generator(0))
    assert main(["info", str(tmp_path / "g.safetensors")]) == 0  # no D: no heading for one
    assert "discriminator (D):" not in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_hang_up_stops_a_command_as_ctrl_c_does_even_where_its_output_went_with_it(tmp_path):
    """SIGHUP (its terminal closed, an ssh connection dropped) ended a program at once, where Ctrl-C and SIGTERM stop
    its command cleanly (forty-third session's audit). It stops as they do. Where the hang-up took the reader of its
    output with it (`toonlib ... 2>&1 | tee log`, tee hung up too), what the stop writes goes nowhere (it failed with
    BrokenPipeError, a traceback and exit status 1), and the program ends with the command's status."""
    command = tmp_path / "command.py"
    command.write_text("import sys, time\n"
                       "from toonlib.messages import run_program\n"
                       "def main():\n"
                       "    try:\n"
                       "        print('ready', file=sys.stderr, flush=True)\n"
                       "        time.sleep(60)\n"
                       "    except KeyboardInterrupt:\n"
                       "        print('command: interrupted', file=sys.stderr, flush=True)\n"
                       "        return 130\n"
                       "    return 0\n"
                       "run_program(main)  # the entry point of toonlib's programs\n")
    process = subprocess.Popen([sys.executable, str(command)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout.readline() == b"ready\n"
        process.stdout.close()  # the reader is gone
        process.send_signal(signal.SIGHUP)
        assert process.wait(60) == 130
    finally:
        process.kill()
