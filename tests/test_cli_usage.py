"""The command line as a person types it: help, version, option names, exit codes, and every expected
failure ending in one short message (no traceback), checked before any model is downloaded."""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata
from tiny import INTERRUPTS, keyboard_interrupt

import toonlib
from toonlib import cli, messages


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toonlib", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def run_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`cli.main(args)` in this process (the console script's function; no new interpreter to start), with
    `env` set for the call: the exit status and what it printed, as `run_cli` gives them."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(list(args))
            except SystemExit as exc:  # argparse: --help, --version and usage errors
                status = exc.code if isinstance(exc.code, int) else 1
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, sub in _subparsers(parser).items() for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert missing == []
    assert all(sub.description for sub in _subparsers(parser).values())


def test_version_and_exit_codes_in_help():
    result = run_cli("--version")  # as typed: a new process
    assert result.returncode == 0 and result.stdout.strip() == f"toonlib {toonlib.__version__}"
    for args in (["--help"], ["toonify", "--help"], ["project", "--help"], ["convert", "--help"], ["app", "--help"]):
        text = run_main(*args).stdout
        assert "exit status:" in text and "2  bad usage" in text and "130  interrupted" in text, args
        # "some of several photos failed" is toonify's alone: not in convert's or project's help
        assert ("1  some of several photos failed" in text) == (args[0] in ("--help", "toonify")), args
        # faces and a folder's count are said where photos are read (convert's help spoke of faces; thirty-ninth
        # session's audit), and the codes are right-aligned, their meanings in one column
        # project finds no face, it is given one; the app's photos come through its page
        assert ("no face" in text) == (args[0] in ("--help", "toonify")), args
        assert ("or photo" in text) == (args[0] not in ("convert", "app")), args
        assert ("how many photos it toonified" in text) == (args[0] in ("--help", "toonify")), args
        rows = text.split("exit status:\n")[1].splitlines()
        assert {row.index(row.split()[1]) for row in rows} == {7}, rows


def test_what_a_command_does_not_take_is_refused_with_its_own_usage():
    """argparse showed the top level's usage (`toonlib [-h] [--version] COMMAND ...`) for a sub-command's stray
    arguments: a shell glob of photos, a misspelt option (now with the close match)."""
    result = run_main("toonify", "a.jpg", "-o", "x.png", "--stpes", "5")
    assert result.returncode == 2 and result.stderr.startswith("usage: toonlib toonify")
    assert "unrecognized arguments: --stpes 5\n  --stpes: did you mean --steps?" in result.stderr
    result = run_main("info", "a", "b")
    assert result.returncode == 2 and "usage: toonlib info" in result.stderr
    assert "unrecognized arguments: b" in result.stderr


def test_an_option_for_one_face_says_which_faces_are_taken():
    """`--face-index 1` got no hint at all (forty-third session's audit): it is told of --face and how it counts."""
    for command, option in (("toonify", "--face-index"), ("align", "--face-index"), ("toonify", "--faces")):
        result = run_main(command, "two.jpg", "-o", "x.png", option, "1")
        assert result.returncode == 2 and result.stderr.endswith(
            f"unrecognized arguments: {option} 1\n  {option}: did you mean --face N? It chooses one face of a photo, "
            "counted from 1, the largest, as --all-faces numbers them (-face1, -face2, ...; the Python API's "
            "face_index= counts from 0)\n"), result.stderr


@pytest.mark.parametrize("command", ["align", "toonify"])
def test_face_takes_a_whole_number_from_1_and_not_with_all_faces(command, tmp_path):
    """--face N counts from 1, as --all-faces numbers the faces: 0, -1 and 'two' are usage errors, and --face with
    --all-faces (one face and every face) too, before any photo is read or model loaded (forty-fourth session)."""
    for value, said in (("0", "must be >= 1, got 0"), ("-1", "must be >= 1, got -1"),
                        ("two", "expected a whole number, got 'two'")):
        result = run_main(command, "two.jpg", "-o", str(tmp_path / "x.png"), "--face", value)
        assert result.returncode == 2 and result.stderr.endswith(
            f"toonlib {command}: error: argument --face: {said}: --face N counts the faces from 1, the largest, as "
            "--all-faces numbers them (-face1, -face2, ...)\n"), result.stderr
    result = run_main(command, "two.jpg", "-o", str(tmp_path / "x.png"), "--face", "2", "--all-faces")
    assert result.returncode == 2 and f"usage: toonlib {command}" in result.stderr
    assert result.stderr.endswith("error: argument --all-faces: not allowed with argument --face\n"), result.stderr
    assert not any(tmp_path.iterdir())
    assert "--face N " in run_main(command, "--help").stdout


def test_a_misspelt_option_is_named_before_a_required_one_is_missed():
    """`toonlib align me.jpg --ouput x.png` said only "the following arguments are required: -o/--output", as did
    `blend --swapres 16`; `project --invert e4e` did not say that --invert is toonify's. argparse's abbreviations
    (`--out`) and a short option's attached value (`-ox.png`) stay taken."""
    for args, said in ((["align", "me.jpg", "--ouput", "x.png"],
                        "toonlib align: error: unrecognized arguments: --ouput x.png\n  --ouput: did you mean "
                        "--output?\n"),
                       (["blend", "--toon", "t.pkl", "--swapres", "16", "-o", "b.safetensors"],
                        "toonlib blend: error: unrecognized arguments: --swapres 16\n  --swapres: did you mean "
                        "--swap-res?\n"),
                       (["project", "me.png", "--invert", "e4e", "-o", "w.npz"],
                        "toonlib project: error: unrecognized arguments: --invert e4e\n  --invert: an option of "
                        "toonlib toonify, toonlib app\n"),
                       # convert's output is its second argument: it listed the commands that take -o (audit)
                       (["convert", "ada.pkl", "-o", "x.safetensors"],
                        "toonlib convert: error: unrecognized arguments: -o x.safetensors\n  -o: convert takes its "
                        "output as an argument, with no option: toonlib convert stylegan2-ffhq-config-f.pkl "
                        "ffhq.safetensors\n")):
        result = run_main(*args)
        assert result.returncode == 2 and result.stderr.endswith(said), result.stderr
        assert "required" not in result.stderr
    # an option under two of its names: argparse kept the last without a word (`--toon a --low b` dropped a)
    result = run_main("blend", "--toon", "a.pkl", "--low", "b.pkl", "--swap-res", "8", "-o", "b.safetensors")
    assert result.returncode == 2 and result.stderr.endswith(
        "toonlib blend: error: --toon and --low are names of one option: give it once\n"), result.stderr
    assert cli._parse(["align", "me.jpg", "--out", "x.png"]).output == "x.png"
    assert cli._parse(["align", "me.jpg", "-ox.png"]).output == "x.png"


def test_a_zero_typed_for_the_letter_o_is_named():
    """`toonify me.jpg -0 x.png` (a zero): argparse took `-0` for a negative number, a photo, and said only that
    -o/--output was required. A zero as an option's value (`--seed -0`) stays that option's to check."""
    for args in (["toonify", "me.jpg", "-0", "x.png"], ["align", "me.jpg", "-0x.png"]):
        result = run_main(*args)
        assert result.returncode == 2 and result.stderr.endswith(
            f"error: {args[2]}: a zero, taken for a negative number: did you mean -o (the letter o)?\n"), result.stderr
    assert cli._parse(["project", "me.png", "--seed", "-0", "-o", "w.npz"]).seed == 0


def test_the_detector_takes_the_package_name_as_written():
    """The help says face-alignment (the package), the choice was face_alignment only; `--space W` and
    `--toon-network g_ema` were refused where `--detector face-alignment` was taken."""
    args = cli.build_parser().parse_args(["align", "me.jpg", "-o", "a.png", "--detector", "face-alignment"])
    assert args.detector == "face_alignment"
    args = cli._parse(["toonify", "me.jpg", "-o", "t", "--space", "W", "--invert", "E4E+Optimize", "--swap-res",
                       "16", "--toon-network", "g-ema"])
    assert (args.space, args.invert, args.toon_network) == ("w", "e4e+optimize", "G_ema")
    assert cli._parse(["app", "--invert", "PSP", "e4e"]).invert == ["psp", "e4e"]
    assert cli._parse(["blend", "--toon", "t", "--swap-res", "8", "-o", "b", "--base-network", "g"]).base_network == "G"
    result = run_main("project", "me.png", "-o", "w.npz", "--space", "z")  # an unknown choice is still refused
    assert result.returncode == 2 and "argument --space: invalid choice: 'z' (choose from" in result.stderr


def test_a_misspelt_command_or_top_level_option_gets_the_close_match():
    """`toonlib --verison` said 'the following arguments are required: COMMAND'; `toonlib toonfy` listed every
    command without saying which was meant."""
    result = run_main("--verison")
    assert result.returncode == 2 and result.stderr.endswith(
        "toonlib: error: unrecognized arguments: --verison\n  --verison: did you mean --version?\n"
        "  (a command's options go after the command: toonlib COMMAND --help)\n")
    result = run_main("--steps", "5", "toonify", "me.jpg", "-o", "t.png")  # a command's option before the command
    assert result.returncode == 2 and "unrecognized arguments: --steps\n  (a command's options go after" in (
        result.stderr)
    result = run_main("toonfy", "me.jpg", "-o", "t.png")
    assert result.returncode == 2 and result.stderr.endswith(
        "toonlib: error: no command 'toonfy'\n  toonfy: did you mean toonify?\n")
    result = run_main("frobnicate")
    assert result.returncode == 2 and result.stderr.endswith(
        "toonlib: error: no command 'frobnicate'; the commands are convert, info, fetch, models, remove, blend, "
        "align, project, toonify, finetune, app (`toonlib --help` says what each does)\n")
    # a command other tools have: what toonlib does it with (`toonlib resume` listed every command)
    result = run_main("resume", "--run-dir", "runs/toon")
    assert result.returncode == 2 and result.stderr.endswith(
        "toonlib: error: no command 'resume'; a fine-tuning run continues when the same `toonlib finetune` command "
        "runs again (from its run folder's newest training state)\n")
    assert run_main("render", "w.npz").stderr.endswith("; `toonlib toonify LATENT.npz -o toon.png` draws a saved "
                                                       "latent's toon\n")
    # nothing close: no wild guess; "an option of toonlib finetune" said nothing of how to choose the device here
    result = run_main("toonify", "me.jpg", "-o", "t.png", "--device", "cpu")
    assert result.returncode == 2 and result.stderr.endswith(
        "unrecognized arguments: --device cpu\n  --device: toonlib toonify uses the GPU (CUDA) where there is one, "
        "else the CPU; for the CPU run CUDA_VISIBLE_DEVICES= toonlib toonify ..., for the second GPU "
        "CUDA_VISIBLE_DEVICES=1\n")
    assert run_main("--version").stdout == f"toonlib {toonlib.__version__}\n"


def test_toonlib_alone_or_help_shows_the_commands():
    """`toonlib` alone said only "the following arguments are required: COMMAND"; `toonlib help` and `toonlib help
    toonify` were "no command 'help'"."""
    result = run_main()
    assert result.returncode == 2 and result.stdout == ""
    assert "    toonify   toonify a photo or a folder of photos\n" in result.stderr
    assert result.stderr.endswith("\ntoonlib: error: no command given: pick one of the COMMANDs above\n")
    overview = run_main("--help")
    assert "`toonlib COMMAND --help` (or `toonlib help COMMAND`) shows" in " ".join(overview.stdout.split())
    for asked, meant in ((run_main("help"), overview), (run_main("help", "toonify"), run_main("toonify", "--help")),
                         (run_main("help", "help"), overview)):  # was "no command 'help'"
        assert (asked.returncode, asked.stdout, asked.stderr) == (0, meant.stdout, "")
    result = run_main("help", "toonfy")
    assert result.returncode == 2 and result.stderr.endswith("no command 'toonfy'\n  toonfy: did you mean toonify?\n")
    result = run_main("help", "toonify", "photo.jpg")  # the extra words were ignored without a word
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.endswith("toonlib: error: help takes one command name, got 'toonify photo.jpg': toonlib help "
                                  "toonify\n")


def test_every_command_help_has_examples_that_run_as_typed():
    """No command's --help showed an example. Each example is one the parser takes as it stands."""
    import shlex

    parser = cli.build_parser()
    for name in parser.subcommands.names():
        text = run_main(name, "--help").stdout
        assert "\nexamples:\n" in text and "\nexit status:\n" in text, name
        examples = text.split("\nexamples:\n")[1].split("\n\n")[0].splitlines()
        assert examples and all(line.startswith(f"  toonlib {name}") for line in examples), text
        for line in examples:
            argv = shlex.split(line.split("  # ")[0])[1:]
            assert cli.build_parser().parse_args(argv).command == name, line


def test_every_default_is_in_the_help():
    """project --seed (0) and --space (w+), --level (0), --detector (auto) and --toon (toonify-blended-tf) did not
    say what they are when left out."""
    parser = cli.build_parser()
    silent = [f"{name} {action.option_strings[0]}" for name, sub in _subparsers(parser).items()
              for action in sub._actions
              if action.option_strings and action.default is not None and action.nargs != 0  # not a flag
              and "default" not in action.help]
    assert silent == []
    toon = next(action for action in _subparsers(parser)["toonify"]._actions if "--toon" in action.option_strings)
    assert "(default: toonify-blended-tf, Toonify's)" in toon.help  # the name to type, not only whose it is


def test_ctrl_c_while_the_parser_is_built_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt  # the imports build_parser triggers take a few seconds

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["info", "x"]) == 130
    assert capsys.readouterr().err == "toonlib: interrupted\n"


@pytest.mark.parametrize("stop", INTERRUPTS)
def test_ctrl_c_exits_130(monkeypatch, capsys, stop):
    """Ctrl-C, also when it cut an import short (not 'error: initialization failed', exit 2); an ImportError of
    its own is an error."""
    monkeypatch.setattr(cli, "cmd_models", lambda args: stop())
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err == "toonlib models: interrupted\n"

    def missing(args):
        raise ImportError("no module named gradio")

    monkeypatch.setattr(cli, "cmd_models", missing)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "toonlib models: error: no module named gradio\n"


def test_ctrl_c_that_cut_torchs_import_short_exits_130(monkeypatch, capsys):
    """Ctrl-C in `toonlib app`'s first seconds lands in torch's import. Telling an interrupt from the expected
    errors must not import torch again: that raised pybind11's "generic_type: cannot initialize type" RuntimeError
    and printed a 90-line traceback (exit 1)."""
    def torch_half_imported():
        raise RuntimeError('generic_type: cannot initialize type "RpcBackendOptions"')

    monkeypatch.setattr(cli, "expected_errors", torch_half_imported)
    monkeypatch.setattr(cli, "cmd_models", lambda args: keyboard_interrupt())
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err == "toonlib models: interrupted\n"


def test_sigterm_stops_a_command_as_ctrl_c_does(tmp_path):
    """SIGTERM (`kill`, `timeout`, a job scheduler) ended `toonlib toonify` at once (exit 143, silent), leaving the
    temporary file of the picture it was writing (`.me-pasted.png.eb618c24.tmp`); now it is Ctrl-C: the file is
    removed, 'interrupted', 130. Under torchrun (WORLD_SIZE > 1), which stops its processes with SIGTERM, it is not."""
    program = tmp_path / "program.py"
    program.write_text("import os, signal, sys, time\n"
                       "import toonlib.cli, toonlib.files\n"
                       "target = sys.argv[1]\n"
                       "def writing(args):\n"
                       "    with toonlib.files.atomic_write_path(target) as tmp:\n"
                       "        tmp.write_bytes(b'half')\n"
                       "        os.kill(os.getpid(), signal.SIGTERM)\n"
                       "        time.sleep(60)\n"
                       "toonlib.cli.cmd_models = writing\n"
                       "sys.argv = ['toonlib', 'models']\n"
                       "toonlib.cli.program()\n")
    for world_size, status in (("1", 130), ("2", -15)):
        out = tmp_path / world_size / "toon.png"
        out.parent.mkdir()
        result = subprocess.run([sys.executable, str(program), str(out)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "WORLD_SIZE": world_size})
        assert result.returncode == status, result.stderr
        written = [path.name for path in out.parent.iterdir()]
        if status == 130:
            assert result.stderr == "toonlib models: interrupted\n"
            assert written == []  # neither the picture nor its temporary file
        else:  # killed while writing: what the test would see without the handler
            assert len(written) == 1 and written[0].startswith(".toon.png.") and written[0].endswith(".tmp"), written


@pytest.mark.parametrize("module", ["numpy", "torch._C"])
def test_ctrl_c_while_numpy_and_torch_load_interrupts_the_command(tmp_path, module):
    """Ctrl-C in a command's first second, while numpy loaded, was lost: `toonlib info` ran on and ended with status 0
    (at another moment numpy turned it into its "Importing the numpy C-extensions failed" ImportError, a traceback).
    Now the interrupt waits until they are loaded: 'interrupted', 130. An audit hook sends it as the module loads."""
    from conftest import FIXTURES

    program = tmp_path / "program.py"
    program.write_text("import os, signal, sys\n"
                       "sent, module = [], sys.argv[1]\n"
                       "def hook(event, args):\n"
                       "    if event == 'import' and args[0] == module and not sent:\n"
                       "        sent.append(module)\n"
                       "        os.kill(os.getpid(), signal.SIGINT)\n"  # the last statement: raised in the import
                       "sys.addaudithook(hook)\n"
                       "import toonlib.cli\n"
                       "sys.argv = ['toonlib', 'info', sys.argv[2]]\n"
                       "toonlib.cli.program()\n")
    result = subprocess.run([sys.executable, str(program), module, str(FIXTURES / "ada_tiny.pkl")],
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stderr, result.stdout) == (130, "toonlib info: interrupted\n", "")
    with pytest.raises(KeyboardInterrupt):  # held, then raised as the block ends
        with messages.interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached = True
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_python_exits_ends_the_program_with_the_commands_status(tmp_path):
    """Ctrl-C once the command was done, while Python exited (joining threads, running exit handlers), printed a
    KeyboardInterrupt traceback ("Exception ignored in ...") under the command's last line; now the program ends at
    once with the command's own status. Here a thread of the program's, which Python joins once the command is done,
    sends the Ctrl-C and then sleeps 60 s (the program ends before: it never says it slept); or, after the exit
    handlers of the command's, one registered before them (the Ctrl-C is ignored there)."""
    program = tmp_path / "program.py"
    program.write_text(
        "import atexit, os, runpy, signal, sys, threading, time\n"
        "def ctrl_c_while_joined():\n"
        "    while threading.main_thread().is_alive():\n"  # until Python exits (and joins this thread)
        "        time.sleep(0.01)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)\n"
        "    print('slept 60 s after the Ctrl-C', flush=True)\n"
        "if sys.argv.pop(1) == 'joined':\n"
        "    threading.Thread(target=ctrl_c_while_joined).start()\n"
        "else:\n"
        # Before the command's own: run after them, where a hidden 10 s sleep here cost the test 40 s (forty-fifth
        # session's timing audit)
        "    atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.5)))\n"
        "module, sys.argv = sys.argv[1], sys.argv[1:]\n"
        "runpy.run_module(module, run_name='__main__')\n")
    missing = str(tmp_path / "missing.pkl")
    for when, args, status, said in (
            ("joined", ["toonlib", "models"], 0, ""),
            ("exit handler", ["toonlib", "models"], 0, ""),
            ("joined", ["toonlib", "info", missing], 2, "toonlib info: error: "),
            ("joined", ["toonlib.train", "--data", str(tmp_path), "--resume", missing, "--run-dir",
                        str(tmp_path / "run")], 2, "error: no checkpoint at")):  # `python -m toonlib.train`
        result = subprocess.run([sys.executable, str(program), when, *args], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == status, result.stderr
        assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
        assert said in result.stderr  # the command's own words stay
        assert "slept 60 s" not in result.stdout  # ended at once
    # Gradio imports IPython (`toonlib app`): no interactive host for all that.
    app = tmp_path / "app.py"
    app.write_text("import atexit, os, signal, time\n"
                   "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.5)))\n"
                   "import gradio\n"
                   "from toonlib.messages import run_program\n"
                   "run_program(lambda: 0)\n")
    result = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "KeyboardInterrupt" not in result.stderr, result.stderr
    # In an interactive host (IPython's `%run -m toonlib models`) the host's next Ctrl-C stays the host's.
    host = tmp_path / "host.py"
    host.write_text("import contextlib, runpy, signal, sys\n"
                    # as a terminal's host has it: a test run in the background (`&`, nohup) is given Ctrl-C ignored
                    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                    "from IPython.core.interactiveshell import InteractiveShell\n"
                    "InteractiveShell.instance()\n"  # a running shell, as in Jupyter
                    "sys.argv = ['toonlib', 'models']\n"
                    "with contextlib.suppress(SystemExit):\n"
                    "    runpy.run_module('toonlib', run_name='__main__')\n"
                    "try:\n"
                    "    signal.raise_signal(signal.SIGINT)\n"
                    "except KeyboardInterrupt:\n"
                    "    print('the host took its Ctrl-C')\n")
    result = subprocess.run([sys.executable, str(host)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.endswith("the host took its Ctrl-C\n"), result.stderr


def test_warnings_read_as_the_commands_own(monkeypatch, capsys):
    import warnings

    def small_face(args):
        warnings.warn("the face is small", stacklevel=2)
        warnings.warn("the face is small", stacklevel=1)  # the same text from another line: once is enough
        return 0

    monkeypatch.setattr(cli, "cmd_models", small_face)
    assert cli.main(["models"]) == 0
    assert capsys.readouterr().err == "toonlib models: warning: the face is small\n"  # no source file, no code line
    assert warnings.showwarning.__module__ == "warnings"  # the API's warnings are Python's again


@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_a_warning_during_a_progress_bar_starts_its_own_line(monkeypatch, capsys, terminal):
    """In a log (`2> log`) a warning or a skipped photo began on the bar's line ("toonify:   0%|   | 0/4
    [00:00<?, ?photo/s]toonlib toonify: warning: ..."): the bar's line is ended first. In a terminal the bars are
    erased and drawn again below the line, as tqdm.write does; nested bars end their line once."""
    import warnings

    from toonlib.messages import progress_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)

    def warn_mid_bar(args):
        with progress_bar(total=4, desc="toonify") as photos, progress_bar(total=2, desc="project") as steps:
            photos.update(1)
            steps.update(1)
            warnings.warn("the face is small", stacklevel=2)
            warnings.warn("the second face is small", stacklevel=2)  # no blank line between (two skipped photos had)
            photos.update(3)
            steps.update(1)
        return 0

    monkeypatch.setattr(cli, "cmd_models", warn_mid_bar)
    assert cli.main(["models"]) == 0
    err = capsys.readouterr().err
    lines = err.split("\n")
    warning = "toonlib models: warning: the face is small"
    if terminal:  # the line follows the bars' erasure (blanks, '\r', the cursor moved up): a terminal shows it alone
        (line,) = [re.sub(r"\x1b\[\d*[A-Z]", "", line) for line in lines if warning in line]
        assert line.split("\r")[-1] == warning and not line.split("\r")[-2].strip(), line
    else:
        assert warning in lines and err.count(f"\n{warning}\ntoonlib models: warning: the second face") == 1, err
        assert "\n\n" not in err, err  # one line end for the two bars, and none again between the warnings
    assert "4/4" in err.split(warning)[1] and "2/2" in err.split(warning)[1]  # the bars go on below it


def test_blend_checks_its_seeds_before_it_writes(tmp_path):
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    for name, seed in (("toon", 1), ("base", 0)):
        save_network(tmp_path / f"{name}.safetensors", tiny_generator(seed))
    out, grid = tmp_path / "blended.safetensors", tmp_path / "grid.png"
    toon, base = (str(tmp_path / f"{name}.safetensors") for name in ("toon", "base"))
    result = run_main("blend", "--toon", toon, "--base", base, "--swap-res", "8", "-o", str(out), "--grid", str(grid),
                      "--seeds", "5-2")
    _short_error(result, "bad seed list '5-2'")
    assert not out.exists() and not grid.exists()


def test_project_refuses_what_it_could_not_write_before_it_projects(tmp_path, offline_cache, monkeypatch):
    from toonlib import projection

    photo = tmp_path / "face.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    _short_error(run_main("project", str(photo), "-o", str(tmp_path / "w.png"), env=offline_cache),
                 "project writes the latent as an .npz file", f"name the output {tmp_path / 'w.npz'}",
                 "pass --image-out for the picture")
    find_spec = importlib.util.find_spec  # as if imageio-ffmpeg (the `notebook` extra) were not installed
    monkeypatch.setattr(projection.importlib.util, "find_spec",
                        lambda name, *args: None if name == "imageio_ffmpeg" else find_spec(name, *args))
    _short_error(run_main("project", str(photo), "-o", str(tmp_path / "w.npz"), "--video", str(tmp_path / "p.mp4"),
                          env=offline_cache), 'writing a video needs imageio-ffmpeg: pip install "toonlib[notebook]"')
    assert not Path(offline_cache["TOONLIB_CACHE"]).exists() and sorted(tmp_path.iterdir()) == [photo]
    # a folder, or several photos: "it is a folder" and argparse's "unrecognized arguments" alone (thirty-fourth
    # session's CLI audit) said nothing of what takes them
    folder = tmp_path / "my photos"
    folder.mkdir()
    _short_error(run_main("project", str(folder), "-o", str(tmp_path / "w.npz"), env=offline_cache),
                 f"{folder} is a folder, and project takes one aligned face: `toonlib toonify '{folder}' -o toons/` "
                 "projects every photo in it and writes each face's -latent.npz")
    _short_error(run_main("project", str(photo), str(photo), "-o", str(tmp_path / "w.npz"), env=offline_cache),
                 f"unrecognized arguments: {photo}\n  toonlib project takes one aligned face; `toonlib toonify "
                 "PHOTOS... -o toons/` projects several and writes each face's -latent.npz")
    # align likewise: `toonlib align *.jpg -o aligned/` got argparse's line alone (thirty-eighth session's audit)
    _short_error(run_main("align", str(folder), "-o", str(tmp_path / "a.png")),
                 f"{folder} is a folder, and align takes one photo: `toonlib toonify '{folder}' -o toons/` aligns "
                 "every photo in it and writes each face's -aligned.png")
    _short_error(run_main("align", str(photo), str(photo), "-o", str(tmp_path / "a.png")),
                 f"unrecognized arguments: {photo}\n  toonlib align takes one photo (--all-faces: each face in it); "
                 "`toonlib toonify PHOTOS... -o toons/` aligns several and writes each face's -aligned.png")
    assert sorted(tmp_path.iterdir()) == [photo, folder]  # nothing written


def test_project_warns_when_its_target_is_not_an_aligned_crop(tmp_path, random_vgg_torch_home):
    from conftest import FIXTURES

    photo = tmp_path / "photo.png"
    Image.fromarray(skdata.astronaut()[:, :400]).save(photo)  # a photo, not a square FFHQ crop
    result = run_main("project", str(photo), "-o", str(tmp_path / "w.npz"), "--base", str(FIXTURES / "ada_tiny.pkl"),
                      "--steps", "1", env={"TORCH_HOME": str(random_vgg_torch_home)})
    assert result.returncode == 0, result.stderr
    warning = f"toonlib project: warning: {photo} is 400x512, not square: project takes an FFHQ-aligned face"
    assert [line for line in result.stderr.splitlines() if line.startswith("toonlib project")] == [
        warning + " (`toonlib align PHOTO -o aligned.png`, or `toonlib toonify` for the whole way); projecting its "
        "centre square"]


def test_project_warns_when_a_square_photo_is_not_the_models_size(tmp_path, random_vgg_torch_home):
    """A square photo that is not an aligned crop was projected without a hint to `toonlib align` first."""
    from conftest import FIXTURES

    photo = tmp_path / "photo.png"
    Image.fromarray(skdata.astronaut()).resize((64, 64)).save(photo)
    result = run_main("project", str(photo), "-o", str(tmp_path / "w.npz"), "--base", str(FIXTURES / "ada_tiny.pkl"),
                      "--steps", "1", env={"TORCH_HOME": str(random_vgg_torch_home)})
    assert result.returncode == 0, result.stderr
    assert f"toonlib project: warning: {photo} is 64x64, not the base model's 32 px: project takes an FFHQ-aligned " \
           "face (`toonlib align PHOTO -o aligned.png --size 32`, or `toonlib toonify` for the whole way); if it is " \
           "one, it is resized\n" in result.stderr


def test_output_closed_early_exits_quietly(tmp_path):
    # `toonlib models | head -1`: the reader is gone before the command writes (closed at once here, so no race)
    proc = subprocess.Popen([sys.executable, "-m", "toonlib", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "TOONLIB_CACHE": str(tmp_path)})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == ""
    assert "141  output closed early" in run_main("--help").stdout


@pytest.mark.parametrize("args", [["--help"], ["toonify", "--help"], ["help", "align"], ["--version"]])
def test_help_and_version_into_an_output_that_takes_nothing_are_not_a_success(args):
    """argparse drops its write's error: `toonlib --help` into a pipe whose reader had ended, or into `/dev/full`,
    printed nothing and exited 0, where README's exit statuses say 141 for the first (forty-fifth session's README
    audit). A full disk is said as the commands say it, exit 2."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write gets EPIPE
    try:
        gone = subprocess.run([sys.executable, "-m", "toonlib", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write)
    assert (gone.returncode, gone.stderr) == (141, "")
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "toonlib", *args], stdout=full, stderr=subprocess.PIPE,
                                    text=True, timeout=300)
        command = {"toonify": "toonlib toonify", "help": "toonlib align"}.get(args[0], "toonlib")  # the help's parser
        assert (result.returncode, result.stderr) == (2, f"{command}: error: could not write to the standard output, "
                                                         "where `>` or `|` sends it (no space left on device)\n")


def test_messages_of_odd_names_say_the_way_out(tmp_path):
    """Four messages stopped short of the fix (audit): a photo named `-me.jpg` was "unrecognized arguments" alone; a
    Windows path (`sub\\me.jpg`) "no such file"; `-o afile/` where afile is a file suggested `afile/me-aligned.png`,
    which cannot be written; a PDF was "in no image format toonlib reads"."""
    photo = tmp_path / "-me.jpg"
    Image.fromarray(skdata.astronaut()).save(photo)
    (tmp_path / "sub").mkdir()
    Image.fromarray(skdata.astronaut()).save(tmp_path / "sub" / "me.jpg")
    (tmp_path / "afile").write_text("notes")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    said = {}
    for case, argv in (("dash", ["align", "-me.jpg", "-o", "a.png"]),
                       ("windows", ["align", "sub\\me.jpg", "-o", "a.png"]),
                       ("windows-toonify", ["toonify", "sub\\me.jpg", "-o", "out/"]),
                       ("file/", ["align", "sub/me.jpg", "-o", "afile/"]),
                       ("pdf", ["align", "doc.pdf", "-o", "a.png"])):
        result = run_cli(*argv, cwd=tmp_path)
        assert result.returncode == 2, (case, result.stderr)
        said[case] = result.stderr.splitlines()[-1]
    assert said["dash"] == "  -me.jpg is a file here: a name that starts with '-' is read as an option; write ./-me.jpg"
    assert said["windows"] == ("toonlib align: error: cannot read 'sub\\me.jpg' as an image: there is no such file "
                               "(folders are separated by / here: sub/me.jpg)")
    assert said["windows-toonify"] == ("toonlib toonify: error: no photo or folder at sub\\me.jpg (folders are "
                                       "separated by / here: sub/me.jpg)")
    assert said["file/"] == ("toonlib align: error: afile/: afile is a file, not a folder: give a folder, or name the "
                             "output file, e.g. me-aligned.png")
    assert said["pdf"] == ("toonlib align: error: cannot read 'doc.pdf' as an image: it is a PDF document, not a "
                           "photo: export the photo in it as PNG or JPEG")
    assert not (tmp_path / "a.png").exists() and (tmp_path / "afile").read_text() == "notes"


def test_a_fine_tuning_whose_output_closed_says_it_stopped(tmp_path):
    """`toonlib finetune --no-progress | head -2`: hours of training ended at the next snapshot's line, exit 141 (not
    in finetune's exit statuses), nothing said."""
    from test_notebooks import _finetune_files

    base, faces = _finetune_files(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "toonlib", "finetune", "--data", str(faces), "--resume", str(base),
                             "--run-dir", str(tmp_path / "run"), "--kimg", "0.008", "--batch-size", "4",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    proc.stdout.close()  # the reader gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert err.strip().splitlines()[-1] == (  # it said the run was saved (thirty-eighth session's audit)
        "toonlib finetune: stopped: its output was closed (the reader of a pipe, such as `| head`, ended) before the "
        "run's first snapshot: nothing was saved, and the same command starts it again")
    assert "141  output closed early" in run_main("finetune", "--help").stdout
    # `2>&1 | head`: stderr is the closed pipe too: the message raised in turn, a traceback and exit 1
    proc = subprocess.Popen(proc.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    proc.stdout.close()
    assert proc.wait(timeout=300) == 141
    # the module's entry point (torchrun's) said "error: [Errno 32] Broken pipe", exit 2, though its --help says 141
    module = [sys.executable, "-m", "toonlib.train", *proc.args[4:8], "--run-dir", str(tmp_path / "run2"),
              *proc.args[-5:]]  # --data, --resume; --kimg ... --no-progress
    proc = subprocess.Popen(module, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err.strip().splitlines()[-1] == (
        "python -m toonlib.train: stopped: its output was closed (the reader of a pipe, such as `| head`, ended) "
        "before the run's first snapshot: nothing was saved, and the same command starts it again")


def test_a_command_started_with_a_closed_stdout_or_stderr_does_its_work(tmp_path, random_vgg_torch_home):
    """Some launchers start programs with a stream closed (`>&-`, `2>&-`): with stdout closed a command did its work,
    then failed (a traceback, exit 1, even --version); with stderr closed `project` stopped at its first progress bar
    and wrote nothing. A launcher script (pyenv's shims) leaves its own file, read-only, where stderr was."""
    from conftest import FIXTURES

    def started(closing: int, read_only: bool = False):
        def preexec() -> None:
            os.close(closing)
            if read_only:  # the lowest free descriptor: the one just closed
                os.open(FIXTURES / "ada_tiny.pkl", os.O_RDONLY)
        return preexec

    env = {**os.environ, "TORCH_HOME": str(random_vgg_torch_home), "TOONLIB_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "toonlib"]
    version = subprocess.run([*command, "--version"], preexec_fn=started(1), stderr=subprocess.PIPE, env=env,
                             timeout=300)
    assert version.returncode == 0 and version.stderr == b""
    photo = tmp_path / "face.png"
    Image.fromarray(skdata.astronaut()).resize((32, 32)).save(photo)
    for read_only in (False, True):
        out = tmp_path / f"w-{read_only}.npz"
        project = subprocess.run([*command, "project", str(photo), "-o", str(out), "--base", str(FIXTURES /
                                  "ada_tiny.pkl"), "--steps", "2"], preexec_fn=started(2, read_only),
                                 stdout=subprocess.PIPE, env=env, timeout=300)
        assert project.returncode == 0 and out.is_file() and b"wrote" in project.stdout


def test_base_model_is_called_base_everywhere():
    parser = cli.build_parser()
    for command in ("project", "toonify", "blend"):
        options = {s for a in _subparsers(parser)[command]._actions for s in a.option_strings}
        assert "--base" in options, command
    # the old spellings stay as aliases
    assert parser.parse_args(["project", "a.png", "--model", "m.pkl", "-o", "w.npz"]).base == "m.pkl"
    args = parser.parse_args(["blend", "--low", "t.pkl", "--high", "b.pkl", "--swap-res", "8", "-o", "x"])
    assert (args.toon, args.base) == ("t.pkl", "b.pkl")


def test_bad_usage_exits_2():
    result = run_cli("toonify")
    assert result.returncode == 2 and "required" in result.stderr
    result = run_cli("no-such-command")
    assert result.returncode == 2


@pytest.fixture
def offline_cache(tmp_path) -> dict:
    """An empty model cache and torch hub: any model or weights download would be attempted (and fail)."""
    return {"TOONLIB_CACHE": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch")}


def _short_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 6, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_inputs_are_checked_before_any_download(tmp_path, offline_cache):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    # The default models are registry names that are not cached: reaching them would try a download.
    _short_error(run_main("project", str(not_an_image), "-o", str(tmp_path / "w.npz"), env=offline_cache),
                 "cannot read", "notes.jpg")
    _short_error(run_main("toonify", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "out"), env=offline_cache),
                 "no photo or folder at")
    _short_error(run_main("toonify", "https://example.com/me.jpg", "-o", str(tmp_path / "out"), env=offline_cache),
                 "'https://example.com/me.jpg' is a web address: toonlib reads photos from files")
    _short_error(run_main("toonify", str(not_an_image), "-o", str(tmp_path / "out"), env=offline_cache),
                 "cannot read")
    empty = tmp_path / "empty"
    empty.mkdir()
    _short_error(run_main("toonify", str(empty), "-o", str(tmp_path / "out"), env=offline_cache), "no photos")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).save(photos / "a.png")
    _short_error(run_main("toonify", str(photos), "-o", str(tmp_path / "toon.png"), env=offline_cache),
                 "names an image file, but the input is a folder")
    # a misspelt model fails at once, naming its option, not after the other models' downloads
    _short_error(run_main("toonify", str(photos / "a.png"), "-o", str(tmp_path / "toon.png"), "--base", "ffhq-1042",
                          env=offline_cache), "--base ffhq-1042: unknown model", "Did you mean 'ffhq-1024'?")
    _short_error(run_main("toonify", str(photos / "a.png"), "-o", str(tmp_path / "toon.png"), "--toon",
                          "toonify-blend-tf", env=offline_cache), "--toon toonify-blend-tf: unknown model")
    _short_error(run_main("blend", "--toon", str(tmp_path / "missing.pkl"), "--base", "ffhq-1024-tf", "--swap-res",
                          "32", "-o", str(tmp_path / "b.safetensors"), env=offline_cache),
                 "--toon", "no checkpoint at", "missing.pkl")
    assert not (Path(offline_cache["TOONLIB_CACHE"])).exists()  # nothing was downloaded or even started
    assert not (tmp_path / "toon.png").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, args, message", [
    ("toonify", ["--steps", "0"], "argument --steps: must be >= 1, got 0"),
    ("toonify", ["--steps", "1.5"], "argument --steps: expected a whole number, got '1.5'"),
    ("toonify", ["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),  # was: range() arg 3 ...
    # was: "Overflow when unpacking long long", once the models were downloaded and loaded
    # Python's seed= range, said as Python says it: 0 to 2**32 - 1 left seed=2**40 out (forty-third session's audit)
    ("toonify", ["--seed", "99999999999999999999"], "argument --seed: must be a whole number from -2**63 to 2**64 - 1 "
                                                     "(what torch's random generator takes), got 9999"),
    ("project", ["--seed", str(-2**63 - 1)], "argument --seed: must be a whole number from -2**63 to 2**64 - 1"),
    ("toonify", ["--swap-res", "7"], "argument --swap-res: must be a power of two >= 4"),
    # options named as typed, not as Python's keywords (`invert='e4e'`, `blend_width must be None or 0`)
    ("toonify", ["--invert", "e4e", "--steps", "3"], "--steps is a projection option and --invert e4e runs no "
                                                     "projection: use --invert optimize or e4e+optimize"),
    ("toonify", ["--invert", "psp", "--space", "w"], "--space is a projection option and --invert psp runs no"),
    ("toonify", ["--invert", "e4e", "--seed", "3"], "--seed is a projection option and --invert e4e runs no"),
    ("toonify", ["--level", "1"], "--level goes with --swap-res (it shapes a re-blend of the toon model)"),
    ("toonify", ["--blend-width", "2"], "--blend-width goes with --swap-res (it shapes a re-blend of the toon"),
    # ignored without a word: the toons of --toon-network G, G_ema and none were the same file's bytes
    ("toonify", ["--toon-network", "G"], "--toon-network goes with --swap-res (it picks the toon model a re-blend "
                                         "takes; without one the toon file's published blend draws the toon)"),
    # psp-toonify's decoder draws the toon: a --toon or --base that did not fit was not even read
    ("toonify", ["--invert", "psp-toonify", "--toon", "mine.pkl"], "--toon is read only to re-blend: --invert "
                                                                   "psp-toonify draws the toon with its encoder's own"),
    ("toonify", ["--invert", "psp-toonify", "--base", "ffhq-1024"], "--base is read only to re-blend: --invert "
                                                                    "psp-toonify draws the toon"),
    ("toonify", ["--swap-res", "16", "--blend-width", "-1"],
     "argument --blend-width: must be a finite number >= 0, got -1"),
    ("align", ["--size", "0"], "argument --size: must be between 4 and 8192, got 0"),  # was: ZeroDivisionError
    ("project", ["--video-every", "0"], "argument --video-every: must be >= 1, got 0"),  # was: after projecting
    ("blend", ["--swap-res", "12"], "argument --swap-res: must be a power of two >= 4"),
    ("blend", ["--swap-res", "16", "--blend-width", "-1"],
     "argument --blend-width: must be a finite number >= 0, got -1"),
    ("blend", ["--truncation-psi", "0.5"], "--truncation-psi goes with --grid (it shapes the grid's faces)"),
    ("app", ["--port", "99999"], "argument --port: must be between 1 and 65535, got 99999"),  # was: OverflowError
    ("app", ["--max-megapixels", "-1"], "argument --max-megapixels: must be a finite number >= 1e-06, got -1"),
    # under one pixel: refused in Python's words, "max_pixels ... (>= 1); got 0" (thirty-sixth session's app audit)
    ("app", ["--max-megapixels", "0.0000001"],
     "argument --max-megapixels: must be a finite number >= 1e-06, got 0.0000001"),
    ("blend", ["--swap-res", "16", "--grid", "{tmp}/g.png", "--truncation-psi", "nan"],  # was: a grid of NaN faces
     "argument --truncation-psi: must be a finite number, got nan"),
    ("app", ["--steps", "300", "--max-steps", "100"], "slider's start (300) must be between 1 and its end (100): lower "
                                                      "the start (--steps) or raise the end (--max-steps)"),
    # image and video outputs named for another kind of file (PNG data went into them)
    ("align", ["-o", "{tmp}/aligned.txt"], "aligned.txt: align writes an image (PNG, JPEG, WebP, ...); name the "
                                           "output {tmp}/aligned.png"),
    # an output of another option than -o is named with it: "name the output" was taken for -o's
    ("project", ["--image-out", "{tmp}/reconstruction"], "--image-out {tmp}/reconstruction: project writes an image"),
    ("project", ["--video", "{tmp}/projection.avi"], "--video {tmp}/projection.avi: project writes an H.264 video "
                                                     "(MP4); name it {tmp}/projection.mp4"),
    ("blend", ["--grid", "{tmp}/grid.pdf"], "--grid {tmp}/grid.pdf: blend writes an image (PNG, JPEG, WebP, ...); "
                                            "name it {tmp}/grid.png"),
    # outputs no file can be written to: refused up front, not after the work with an OSError naming a temporary file
    ("toonify", ["-o", "{tmp}/me.png"], "refusing to overwrite {tmp}/me.png: it is an input photo"),
    ("toonify", ["-o", "{tmp}/me.png/toon.png"], "cannot write {tmp}/me.png/toon.png: {tmp}/me.png is a file, not a"),
    # a folder where one file is written: told the file to name in it (a new folder's '/' got "name it aligned.png")
    ("project", ["-o", "{tmp}"], "{tmp} names a folder, but project writes one file there, the latent as an .npz "
                                 "file (NVIDIA's projected_w.npz): name it, e.g. {tmp}/me.npz"),
    ("align", ["-o", "{tmp}/aligned/"], "{tmp}/aligned/ names a folder, but align writes one file there, an image "
                                        "(PNG, JPEG, WebP, ...): name it, e.g. {tmp}/aligned/me-aligned.png"),
    ("blend", ["-o", "{tmp}/blends/"], "{tmp}/blends/ names a folder, but blend writes one file there, toonlib's "
                                       "format, a safetensors file: name it, e.g. {tmp}/blends/blended.safetensors"),
    # --all-faces numbers the name it is given: a folder was told "align writes one file there"
    ("align", ["-o", "{tmp}/faces/", "--all-faces"], "{tmp}/faces/ names a folder, but align --all-faces takes a file "
                                                     "name, an image (PNG, JPEG, WebP, ...), and numbers it per face: "
                                                     "name it, e.g. {tmp}/faces/me.png (written as "
                                                     "{tmp}/faces/me-face1.png, me-face2.png, ...)"),
    # found by a new-user audit: each was accepted, and failed or was ignored later
    ("toonify", ["-o", "{tmp}/toons.txt"], "-o {tmp}/toons.txt: toonify writes one photo's images to an image file"),
    ("toonify", ["-o", "/sys/toons"], "cannot write /sys/toons/me-toon.png: files cannot be created in /sys"),
    ("project", ["--image-out", "/sys/r.png"], "cannot write /sys/r.png: files cannot be created in /sys"),
    ("align", ["-o", "{tmp}/me.png"], "refusing to overwrite {tmp}/me.png: it is an input photo; choose another -o"),
    ("blend", ["--seeds", "0-3"], "--seeds goes with --grid (they are the grid's rows)"),
    ("blend", ["--grid", "{tmp}/g.png", "--seeds", "5-2"], "bad seed list '5-2': the range 5-2 runs backwards"),
    ("blend", ["--toon", "lpips-vgg16"], "--toon lpips-vgg16: 'lpips-vgg16' is the VGG16 weights of the LPIPS loss, "
                                         "not a StyleGAN2 generator or a pSp / e4e encoder"),
    ("toonify", ["--invert", "e4e", "--encoder", "ffhq-1024-tf"], "'ffhq-1024-tf' is a StyleGAN2 generator, not a "
                                                                  "pSp / e4e encoder"),
    # a second audit: each was accepted, and ignored, overflowed or ran for an hour
    ("toonify", ["--encoder", "e4e-ffhq"], "--encoder is the encoder of an --invert mode that uses one (e4e, psp, "
                                           "e4e+optimize, psp-toonify), and --invert optimize (the default) starts"),
    ("align", ["--size", "100000"], "argument --size: must be between 4 and 8192, got 100000"),  # was: killed (OOM)
    ("align", ["--size", "1"], "argument --size: must be between 4 and 8192, got 1"),  # a 1 x 1 crop, projected
    ("blend", ["--grid", "{tmp}/g.png", "--seeds", "0-1000000000"],
     "bad seed list '0-1000000000': 1000000001 seeds, more than the 32 taken here; give fewer"),
    ("blend", ["--grid", "{tmp}/g.png", "--seeds", "4294967296"], "seeds go from 0 to 4294967295, got 4294967296"),
    ("toonify", ["--swap-res", "4096"], "--swap-res 4096 is above the 1024 px of the --toon model, which would then "
                                        "be used unblended: give one of 4, 8, 16, 32, 64, 128, 256, 512 (at 1024 too"),
    ("blend", ["--swap-res", "2048"], "--swap-res 2048 is above the 1024 px of the --toon model"),
    ("blend", ["--toon", "toonify-blended-rosinality"], "'toonify-blended-rosinality' holds only a blended generator"),
    # toonify's came after the models' (or psp-toonify's encoder's) download (thirty-ninth session's audit)
    ("toonify", ["--toon", "toonify-blended-rosinality", "--swap-res", "16"],
     "'toonify-blended-rosinality' holds only a blended generator"),
    ("toonify", ["--toon", "toonify-blended-rosinality", "--swap-res", "16", "--invert", "psp-toonify"],
     "'toonify-blended-rosinality' holds only a blended generator"),
    # the base and the toon model swapped: projected into the toon model, drawn by FFHQ, without a word
    ("toonify", ["--base", "toonify-blended-tf", "--toon", "ffhq-1024-tf"], "--base toonify-blended-tf: "
     "'toonify-blended-tf' is a toon model, not a base (the model photos are projected into, such as 'ffhq-1024-tf', "
     "its own): give it as --toon"),
    ("blend", ["--base", "toonify-blended-tf", "--toon", "ffhq-1024-tf"], "--base toonify-blended-tf: "  # was: written
     "'toonify-blended-tf' is a toon model, not a base (the model photos are projected into, such as 'ffhq-1024-tf', "
     "its own): give it as --toon"),
    # a registry encoder as the toon: its base downloaded, then blended with itself under a warning
    ("toonify", ["--toon", "e4e-ffhq"], "--toon e4e-ffhq: 'e4e-ffhq' is an encoder (photo -> latent of "
     "'ffhq-1024-rosinality'), not a toon model: give it as --encoder with --invert e4e; a toon model is one `toonlib "
     "models` marks under TOON, such as 'toonify-blended-tf'"),
    ("blend", ["--toon", "psp-ffhq"], "--toon psp-ffhq: 'psp-ffhq' is an encoder (photo -> latent of "
     "'ffhq-1024-rosinality'), not a toon model: an encoder inverts photos (toonlib toonify --invert psp)"),
    # a registry base as the toon: downloaded (380 MB), then blended with the base, a toon of nothing but faces
    ("blend", ["--toon", "ffhq-1024-tf"], "--toon ffhq-1024-tf: 'ffhq-1024-tf' is a base model (the model photos are "
     "projected into), not a toon model: give it as --base; a toon model is one `toonlib models` marks under TOON, "
     "such as 'toonify-blended-tf'"),
    ("toonify", ["--toon", "ffhq-1024"], "--toon ffhq-1024: 'ffhq-1024' is a base model (the model photos are "
     "projected into), not a toon model: give it as --base"),
    # an encoder of the other space offered by the app: downloaded (1 GB), then refused
    ("app", ["--invert", "e4e", "--encoder", "psp-toonify"], "'psp-toonify' makes latents of its blended toon "
                                                             "decoder, not of the base model"),
    ("toonify", ["-o", "{tmp}/w.svg"], "it writes no .svg images: name it {tmp}/w.png, or give a folder "
                                       "({tmp}/w.svg/: a folder whatever its name)"),  # 'create it first' hid the '/'
    # a registry encoder of the other latent space drew the photo as the toon (exit 0), after a ~1 GB download
    ("toonify", ["--invert", "psp-toonify", "--encoder", "psp-ffhq"], "'psp-ffhq' makes latents of the FFHQ base, "
                                                                      "not of a toon model"),
    # an unset shell variable ("$OUT"): -o "" wrote into the current folder, --video "" made no video, without a word
    ("toonify", ["-o", ""], "argument -o/--output: it is empty (''), which an unset shell variable gives: give a path"),
    ("project", ["--video", ""], "argument --video: it is empty (''), which an unset shell variable gives: give a "
                                 "path"),
    ("blend", ["--toon", ""], "argument --toon/--low: it is empty (''), which an unset shell variable gives: give a "
                              "model: a path, URL or name (`toonlib models`)"),
    ("toonify", ["--swap-res", "0"], "argument --swap-res: must be a power of two >= 4 (a resolution such as 4, 8, "
                                     "..., 1024), got 0"),  # was "must be >= 1", then 1 was refused too
    # several photos (a shell glob): -o is their folder; a latent is drawn alone; two photos of one name would clash
    ("toonify", ["{tmp}/sub", "-o", "{tmp}/t.png"], "-o {tmp}/t.png names an image file, but the input is several "
                                                       "photos: give a folder for -o"),
    ("toonify", ["{tmp}/w-latent.npz"], "w-latent.npz is a latent file, and a command draws the toons of one latent "
                                        "file: toonlib toonify {tmp}/w-latent.npz -o ..."),
    ("toonify", ["{tmp}/sub/me.png"], "2 photos would get the same file names in -o, me-png-*.png ({tmp}/me.png, "
                                      "{tmp}/sub/me.png): rename one"),  # no case remark: not their cause
])
def test_bad_values_are_refused_before_any_download(tmp_path, offline_cache, command, args, message):
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    for name in ("sub/me.png", "sub/you.png"):  # several photos: another one of the same name, or not
        if f"{{tmp}}/{name}" in args or (name == "sub/you.png" and "{tmp}/sub" in args):
            (tmp_path / "sub").mkdir()
            Image.fromarray(skdata.astronaut()).save(tmp_path / name)
    base = {"toonify": [str(photo), "-o", str(tmp_path / "out")], "align": [str(photo), "-o", str(tmp_path / "a.png")],
            "project": [str(photo), "-o", str(tmp_path / "w.npz"), "--video", str(tmp_path / "v.mp4")],
            "blend": ["--toon", "toonify-blended-tf", "--base", "ffhq-1024-tf", "-o", str(tmp_path / "b.safetensors")],
            "app": []}[command]
    if command == "blend" and "--swap-res" not in args:
        args = [*args, "--swap-res", "16"]
    result = run_main(command, *base, *(arg.format(tmp=tmp_path) for arg in args), env=offline_cache)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # argparse's usage lines, if any, come first
    assert last.startswith(f"toonlib {command}: error: ") and message.format(tmp=tmp_path) in last, result.stderr
    assert not Path(offline_cache["TOONLIB_CACHE"]).exists() and not Path(offline_cache["TORCH_HOME"]).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["me.png"] + ["sub"] * (tmp_path / "sub").exists()


def test_project_into_a_toon_model_says_what_its_latent_is(tmp_path, offline_cache):
    """`project --base yang-pixar` made the toon model's own latent, which `toonify` of it draws as FFHQ's: another
    face, without a word. Said before the download (a cartoon inverted into its own toon model is of use)."""
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    result = run_main("project", str(photo), "-o", str(tmp_path / "w.npz"), "--base", "yang-pixar", env=offline_cache)
    assert result.stderr.startswith("toonlib project: warning: --base yang-pixar: 'yang-pixar' is a toon model, not a "
                                    "base (the model photos are projected into, such as 'ffhq-1024-rosinality', its "
                                    "own): a photo to toonify is projected into its base; the latent made here is the "
                                    "toon model's own, and `toonlib toonify` of it draws another face\n"), result.stderr
    assert "could not download 'yang-pixar'" in result.stderr and result.returncode == 2  # offline


def test_a_latent_or_a_model_given_as_the_photo_is_told_in_the_command_lines_words(tmp_path, offline_cache):
    """`toonlib project w.npz` was told Python's code ("toonifier.render(toonlib.projection.load_latent(path)) draws
    its toon"), and a model given as the photo "(--toon, --base; toon=, base= in Python)"."""
    import torch
    from conftest import FIXTURES

    from toonlib.projection import save_latent

    save_latent(torch.zeros(1, 8, 32), tmp_path / "w.npz")
    result = run_main("project", str(tmp_path / "w.npz"), "-o", str(tmp_path / "z.npz"), env=offline_cache)
    _short_error(result)
    assert result.stderr.endswith("not a photo: `toonlib toonify` draws its toon from a file named .npz\n")
    result = run_main("align", str(FIXTURES / "ada_tiny.pkl"), "-o", str(tmp_path / "a.png"), env=offline_cache)
    _short_error(result)
    assert result.stderr.endswith("not a photo: give it as a model to toonify, project or blend, the toon (--toon) "
                                  "or the base (--base)\n")  # align takes no model: it named options of its own


def test_toonify_outputs_named_too_long_are_refused_before_the_work(tmp_path, offline_cache):
    """A photo's name of 245 bytes (valid) gave outputs of 260 (`-reconstruction.png`): `toonify` of it, alone or in a
    folder, failed with "File name too long" after the projection, and the folder's other photos were lost with it.
    Alone, it is refused before any work; in a folder, skipped (the others are toonified:
    test_cli_pipeline.py), and a folder of such photos alone ends before any model is loaded."""
    folder = tmp_path / "photos"
    folder.mkdir()
    long_name = "a" + "\u00e9" * 120 + ".png"  # 245 bytes in UTF-8
    Image.fromarray(skdata.astronaut()).save(folder / long_name)
    for args, advice in (([str(folder)], f"it is named after the photo {folder / long_name}: rename it\n"
                                         "no photo was toonified: all 1 failed (above)\n"),
                         ([str(folder / long_name)], f"it is named after the photo {folder / long_name} or -o: rename "
                                                     "the photo, or give -o a short image name (-o toon.png)\n")):
        result = run_main("toonify", *args, "-o", str(tmp_path / "toons"), env=offline_cache)
        _short_error(result, "-reconstruction.png: its name is 260 bytes long, and file names here take 255 at most")
        assert (result.stderr + result.stdout).endswith(advice), result.stderr
    assert not Path(offline_cache["TOONLIB_CACHE"]).exists() and not (tmp_path / "toons").exists()


def test_toonify_output_with_a_trailing_slash_is_a_folder_whatever_its_name(tmp_path, offline_cache):
    """`-o toons.png/` wrote the files toons.png, toons-aligned.png, ...; `-o run.2024.12.03/` was refused as "writes
    no .03 images", with the '/' dropped; a folder of photos took both as folders already."""
    from toonlib.commands import _toonify_outputs

    for output in ("toons.png/", "run.2024.12.03/"):
        path = _toonify_outputs(Path(output), [Path("me.jpg")], None, folder=True)
        assert path(Path("me.jpg"), None, "toon") == Path(output) / "me-toon.png"
    assert _toonify_outputs(Path("toon.png"), [Path("me.jpg")], None)(Path("me.jpg"), None, "aligned") == Path(
        "toon-aligned.png")
    Image.fromarray(skdata.astronaut()).save(tmp_path / "me.png")
    result = run_main("toonify", str(tmp_path / "me.png"), "-o", f"{tmp_path}/run.2024.12.03/", env=offline_cache)
    assert result.returncode == 2 and "writes no .03 images" not in result.stderr  # past the outputs: the models
    assert "could not download" in result.stderr or "no internet" in result.stderr, result.stderr


def test_finetune_settings_are_named_as_the_options_are_typed(tmp_path):
    """TrainConfig's checks named its fields ('invalid TrainConfig: kimg must be > 0'), not the options."""
    result = run_main("finetune", "--data", str(tmp_path), "--resume", "ffhq-256-noaug", "--run-dir",
                      str(tmp_path / "run"), "--kimg", "0", "--batch-gpu", "99")
    assert result.returncode == 2 and result.stderr == (
        "toonlib finetune: error: --kimg must be > 0, got 0.0; --batch-gpu must be between 1 and --batch-size (8), "
        "got 99\n")


def test_video_every_without_a_video_is_refused(tmp_path):
    result = run_main("project", str(tmp_path / "me.png"), "-o", str(tmp_path / "w.npz"), "--video-every", "2")
    assert result.returncode == 2 and result.stderr == ("toonlib project: error: --video-every goes with --video (the "
                                                        "video's frames); add --video, or leave --video-every out\n")


def test_missing_vgg16_weights_is_one_short_message(tmp_path, offline_cache):
    """LPIPS needs torchvision's VGG16; offline and uncached, projection says so in a few lines, exit 2, with the
    models (it was said at the first projection step, a folder's first batch read and aligned)."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    face = tmp_path / "face.png"
    Image.fromarray(skdata.astronaut()).resize((32, 32)).save(face)
    result = run_cli("project", str(face), "--base", str(tmp_path / "base.safetensors"), "--steps", "1",
                     "-o", str(tmp_path / "w.npz"), env=offline_cache)
    _short_error(result, "the projection's loss (LPIPS) needs torchvision's ImageNet VGG16 weights: could not download "
                 "'lpips-vgg16'", "vgg16-397923af.pth")
    assert not (tmp_path / "w.npz").exists()



def test_a_failed_download_names_the_option_that_takes_a_local_file(tmp_path, monkeypatch, capsys):
    """Registry models named (or defaulted) on the command line are fetched before anything loads, so the
    advice of a failed download names this command's option for a local file."""
    import dataclasses
    import socket

    from tiny import tiny_generator

    from toonlib import download, models
    from toonlib.checkpoints import save_network

    with socket.socket() as sock:  # a port nobody listens on: every download fails as if offline
        sock.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{sock.getsockname()[1]}/weights"
    monkeypatch.setattr(models, "MODELS", {name: dataclasses.replace(info, sources=(offline,), sha256=None)
                                           for name, info in models.MODELS.items()})
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "DRIVE_ROOT", tmp_path / "no-drive")
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0))
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    local = tmp_path / "tiny.safetensors"
    save_network(local, tiny_generator(0))

    def advice(*argv: str) -> str:
        assert cli.main(list(argv)) == 2
        return capsys.readouterr().err

    out = str(tmp_path / "out")
    assert "pass its path: --base PATH" in advice("toonify", str(photo), "-o", out)  # the default base
    assert "pass its path: --toon PATH" in advice("toonify", str(photo), "-o", out, "--base", str(local))
    assert "pass its path: --encoder PATH" in advice("toonify", str(photo), "-o", out, "--invert", "e4e",
                                                     "--base", str(local), "--toon", str(local))
    assert "pass its path: --base PATH" in advice("project", str(photo), "-o", str(tmp_path / "w.npz"))
    assert "pass its path: --toon PATH" in advice("blend", "--toon", "toonify-blended-tf", "--base", str(local),
                                                  "--swap-res", "8", "-o", str(tmp_path / "b.safetensors"))
    assert "pass its path: --toon PATH" in advice("blend", "--toon", f"{offline}/toon.pkl", "--base", str(local),
                                                  "--swap-res", "8", "-o", str(tmp_path / "b.safetensors"))  # a URL
    said = advice("blend", "--toon", f"{offline}/toon.pkl", "--base", f"{offline}/base.pkl", "--swap-res", "8", "-o",
                  str(tmp_path / "b.safetensors"))  # the second URL too: its option, not a hashed cache name
    assert (f"This command needs '{offline}/base.pkl' too, also not on this machine: `toonlib fetch "
            f"{offline}/base.pkl` once online, or save it anywhere and pass its path: --base PATH") in said, said
    assert not list((tmp_path / "cache").rglob("*.safetensors")) and not (tmp_path / "out").exists()


def test_an_unknown_model_is_told_the_names_that_fit_its_option(tmp_path, offline_cache):
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    result = run_main("toonify", str(photo), "-o", str(tmp_path / "out"), "--toon", "toonfy", env=offline_cache)
    _short_error(result, "--toon toonfy: unknown model 'toonfy'", "Known StyleGAN2 generators: ffhq-1024,")
    assert not any(name in result.stderr for name in ("lpips-vgg16", "face-alignment-sfd", "inception-fid", "e4e-ffhq"))
    result = run_main("toonify", str(photo), "-o", str(tmp_path / "out"), "--invert", "e4e", "--encoder", "e4e",
                      env=offline_cache)
    _short_error(result, "unknown model 'e4e'. Did you mean 'e4e-ffhq'? Known pSp / e4e encoders: e4e-ffhq, psp-ffhq, "
                         "psp-toonify\n")


def test_a_generator_given_as_the_encoder_is_told_where_it_goes(tmp_path):
    """The message ended "(for a generator checkpoint use toonlib.load_network)": Python's advice."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    model = save_network(tmp_path / "ffhq.safetensors", tiny_generator(0))
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    result = run_main("toonify", str(photo), "-o", str(tmp_path / "toon.png"), "--base", str(model), "--toon",
                      str(model), "--invert", "e4e", "--encoder", str(model))
    _short_error(result, f"{model} is a generator checkpoint (a network pickle or a toonlib file), not a pSp / e4e "
                 "checkpoint", "; a generator goes to --base or --toon, and "
                 "--encoder takes a pSp / e4e file (e4e-ffhq, psp-ffhq, psp-toonify)")
    assert "load_network" not in result.stderr and not (tmp_path / "toon.png").exists()


def _cache_with_toonify_models(tmp_path: Path) -> tuple[dict, object, object]:
    """A model cache holding Toonify's file (toon model as G, its blend as G_ema) and its base under their registry
    names; the environment that points there, the toon model and the base."""
    from tiny import write_toonify_models

    from toonlib.models import MODELS

    cache = tmp_path / "cache"
    cache.mkdir()
    base_path, toon_path, base, toon = write_toonify_models(tmp_path)
    base_path.rename(cache / MODELS["ffhq-1024-tf"].filename)
    toon_path.rename(cache / MODELS["toonify-blended-tf"].filename)
    return {"TOONLIB_CACHE": str(cache), "TORCH_HOME": str(tmp_path / "torch")}, toon, base


def test_blend_takes_the_toon_model_the_registry_names(tmp_path):
    """Toonify's file keeps its toon model as G and the published blend as G_ema: `blend` blended the blend again."""
    import torch

    from toonlib.blending import blend
    from toonlib.checkpoints import load_network

    env, toon, base = _cache_with_toonify_models(tmp_path)
    out = tmp_path / "b.safetensors"
    for extra, low in (([], toon), (["--toon-network", "G_ema"], blend(toon, base, 8))):
        result = run_main("blend", "--toon", "toonify-blended-tf", "--base", "ffhq-1024-tf", "--swap-res", "16",
                          "-o", str(out), *extra, env=env)
        assert result.returncode == 0, result.stderr
        expected, got = blend(low, base, 16).state_dict(), load_network(out).G_ema.state_dict()
        assert all(torch.equal(got[key], value) for key, value in expected.items()), extra


def test_a_swap_resolution_above_a_toon_files_resolution_is_refused(tmp_path):
    """Above the model's resolution every layer is the toon model's: the result was the toon model, exit 0."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    for name, seed in (("toon", 1), ("base", 0)):
        save_network(tmp_path / f"{name}.safetensors", tiny_generator(seed))
    out = tmp_path / "b.safetensors"
    result = run_main("blend", "--toon", str(tmp_path / "toon.safetensors"), "--base",
                      str(tmp_path / "base.safetensors"), "--swap-res", "64", "-o", str(out))
    _short_error(result, "--swap-res 64 is above the 32 px of the --toon model, which would then be used unblended: "
                         "give one of 4, 8, 16 (at 32 too, with a hard switch, every layer is the toon model's)")
    assert not out.exists()


def test_a_toon_file_paired_with_the_default_base_is_told_which_base(tmp_path):
    """The lineage warning said to pair the toon model with its base "(its lineage in `toonlib models`)", which
    knows registry models only: for a file, it did not say that the default base was used."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network
    from toonlib.models import MODELS

    (tmp_path / "cache").mkdir()
    save_network(tmp_path / "cache" / MODELS["ffhq-1024-tf"].filename, tiny_generator(0))
    save_network(tmp_path / "toon.safetensors", tiny_generator(1))  # not fine-tuned from that base
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    toon = str(tmp_path / "toon.safetensors")
    result = run_main("toonify", str(photo), "-o", str(tmp_path / "out"), "--toon", toon, "--swap-res", "64",
                      env={"TOONLIB_CACHE": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch")})
    _short_error(result, "--swap-res 64 is above the 32 px of the --toon model")  # stops it before any photo work
    warning = next(line for line in result.stderr.splitlines() if line.startswith("toonlib toonify: warning: "))
    assert "does not look fine-tuned from the default base model 'ffhq-1024-tf'" in warning, warning
    assert warning.endswith("Pair the toon model with the base it was fine-tuned from (the registry's toon models "
                            "name theirs: their lineage in `toonlib models`)."), warning


def test_a_snapshot_whose_recorded_base_is_gone_says_so(tmp_path, monkeypatch):
    """A snapshot whose run's base file was moved or deleted was said to "record no base", and with the default base
    in the cache was paired with it, the errors saying only that the default was taken."""
    from tiny import tiny_generator

    from toonlib.checkpoints import Networks, save_network
    from toonlib.messages import ToonlibWarning
    from toonlib.models import MODELS
    from toonlib.pipeline import Toonifier

    gone = tmp_path / "gone.pkl"
    toon = str(tmp_path / "toon.safetensors")
    save_network(toon, Networks(G_ema=tiny_generator(1), meta={"finetune": {"base": str(gone), "data": "faces",
                                                                               "kimg": 1.0}}))
    env = {"TOONLIB_CACHE": str(tmp_path / "empty-cache"), "TORCH_HOME": str(tmp_path / "torch")}
    result = run_main("blend", "--toon", toon, "--swap-res", "8", "-o", str(tmp_path / "b.safetensors"), env=env)
    _short_error(result, f"error: '{toon}' is a 32 px model that records its base {gone}, which is not there "
                         "(moved or deleted), and the default base 'ffhq-1024-tf' is 1024 px: name the model it was "
                         "fine-tuned from (--base)")
    cache = tmp_path / "cache"
    cache.mkdir()
    save_network(cache / MODELS["ffhq-1024-tf"].filename, Networks(G_ema=tiny_generator(0, w_dim=64)))
    env["TOONLIB_CACHE"] = str(cache)
    result = run_main("blend", "--toon", toon, "--swap-res", "8", "-o", str(tmp_path / "b.safetensors"), env=env)
    assert result.returncode == 2 and result.stderr.rstrip().endswith(
        f"No --base was given, so the base was toonlib's default (the toon model records its base {gone}, "
        "which is not there), 'ffhq-1024-tf': name the base the toon model was fine-tuned from with --base."), (
        result.stderr)
    monkeypatch.setenv("TOONLIB_CACHE", str(cache))
    with pytest.warns(ToonlibWarning, match=rf"^the toon model records its base {re.escape(str(gone))}, which "
                                            r"is not there \(moved or deleted\): the default base 'ffhq-1024-tf' is "
                                            r"taken instead; name the model it was fine-tuned from \(base=, --base\)$"):
        with pytest.raises(ValueError, match="makes 8 x 64"):
            Toonifier(toon=toon, swap_res=8)


def test_a_toon_file_of_another_resolution_is_not_paired_with_a_default_base_to_download(tmp_path, monkeypatch):
    """A 32 px toon file that records no base waited for the 380 MB FFHQ 1024 download (here: "could not download
    'ffhq-1024-tf'") before that base was refused as making 18 x 512 latents: the registry's resolution says so
    first. A base in the cache is compared as loaded; a named base is taken as given."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network
    from toonlib.pipeline import Toonifier

    save_network(tmp_path / "toon.safetensors", tiny_generator(1))
    toon = str(tmp_path / "toon.safetensors")
    env = {"TOONLIB_CACHE": str(tmp_path / "empty-cache"), "TORCH_HOME": str(tmp_path / "torch")}
    expected = (f"error: '{toon}' is a 32 px model that records no base, and the default base 'ffhq-1024-tf' is "
                "1024 px: name the model it was fine-tuned from (--base)")
    result = run_main("blend", "--toon", toon, "--swap-res", "8", "-o", str(tmp_path / "b.safetensors"), env=env)
    _short_error(result, expected)
    photo = tmp_path / "me.png"
    Image.new("RGB", (64, 64)).save(photo)
    result = run_main("toonify", str(photo), "--toon", toon, "--swap-res", "8", "-o", str(tmp_path / "out"), env=env)
    _short_error(result, expected)
    assert not (tmp_path / "b.safetensors").exists() and not (tmp_path / "out").exists()
    monkeypatch.setenv("TOONLIB_CACHE", env["TOONLIB_CACHE"])
    with pytest.raises(ValueError, match=r"^'.*toon.safetensors' is a 32 px model that records no base, .* "
                                         r"\(--base, base=\)$"):
        Toonifier(toon=toon, swap_res=8)
    base = tmp_path / "base.safetensors"
    save_network(base, tiny_generator(0))
    result = run_main("blend", "--toon", toon, "--base", str(base), "--swap-res", "8", "-o",
                      str(tmp_path / "b.safetensors"), env=env)
    assert result.returncode == 0, result.stderr


def test_messages_name_options_not_python_arguments(tmp_path, monkeypatch):
    from conftest import FIXTURES

    from toonlib import checkpoints

    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(7):
        Image.new("RGB", (32, 32), (30 * i, 0, 0)).save(faces / f"{i}.png")
    Image.new("RGB", (40, 30)).save(faces / "wide.png")
    finetune = ["finetune", "--data", str(faces), "--resume", str(FIXTURES / "ada_tiny.pkl"), "--run-dir",
                str(tmp_path / "run")]
    result = run_main(*finetune, "--resolution", "64")
    _short_error(result, "error: --resolution 64: the base model")
    result = run_main(*finetune, "--device", "gpu")
    _short_error(result, "error: --device gpu is not a torch device: use 'cpu', 'cuda', 'cuda:1', ..., or leave "
                         "--device out (CUDA when available, else the CPU)")
    result = run_main(*finetune, "--prepare", "none")
    assert "wide.png: not square (40x30); use --prepare crop or align" in result.stderr, result.stderr
    assert "prepare=" not in result.stderr and result.returncode == 2  # 7 usable images of the 8 it needs
    result = run_main("models", "--cache-dir", str(FIXTURES / "ada_tiny.pkl"))  # a file: checked before any output
    _short_error(result, f"error: the cache folder (--cache-dir) {FIXTURES / 'ada_tiny.pkl'} is a file, not a folder")
    assert result.stdout == ""
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as a 200-megapixel photo is refused
    result = run_main("align", str(photo), "-o", str(tmp_path / "a.png"))
    _short_error(result, "me.png': it is 262144 pixels, more than Pillow opens in one image (2000 at most): "
                         "downscale it (a face needs a few megapixels at most)")
    assert "PIL" not in result.stderr
    secret = tmp_path / "secret.pkl"
    secret.write_bytes(b"x")

    def unreadable(path, *args, **kwargs):  # chmod 000 does not stop root, who may run the tests
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoints, "open", unreadable, raising=False)
    result = run_main("info", str(secret))
    assert result.stderr == (f"toonlib info: error: {secret}: permission denied; check its permissions (ls -ld "
                             f"{secret}) or give another file\n")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or __import__("torch").cuda.is_available(),
                    reason="a machine without a CUDA GPU")
def test_finetune_on_cuda_without_a_gpu_names_the_option(tmp_path):
    from conftest import FIXTURES

    result = run_main("finetune", "--data", str(tmp_path), "--resume", str(FIXTURES / "ada_tiny.pkl"), "--run-dir",
                      str(tmp_path / "run"), "--device", "cuda")
    _short_error(result, "error: --device cuda, but torch finds no CUDA GPU here", "pass --device cpu, or leave "
                         "--device out (the CPU when there is no GPU)")


def test_finetune_says_a_zip_is_damaged(tmp_path):
    import zipfile

    from conftest import FIXTURES

    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(8):
            zf.writestr(f"{i}.png", b"x" * 4000)
    archive.write_bytes(archive.read_bytes()[:5000])  # an interrupted download
    result = run_main("finetune", "--data", str(archive), "--resume", str(FIXTURES / "ada_tiny.pkl"), "--run-dir",
                      str(tmp_path / "run"))
    _short_error(result, f"'{archive}': the .zip file is damaged")


def test_long_descriptions_wrap_at_the_help_width():
    for command in ("fetch", "finetune"):
        result = run_cli(command, "--help", env={"COLUMNS": "80"})
        assert result.returncode == 0
        description = result.stdout.split("\n\n")[1]  # after the usage
        assert max(len(line) for line in description.splitlines()) <= 80, description
    assert "\n    2  bad usage" in run_cli("--help", env={"COLUMNS": "80"}).stdout  # the exit-status table as written


def test_finetune_help_shows_defaults_as_typed(capsys):
    """--ema-rampup's help said "or 'none' (default: None)": Python's None, not the value one types."""
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "ramp-up ratio, or 'none' (default: none)" in text


def test_a_network_the_file_lacks_names_the_option_that_asked_for_it(tmp_path):
    """`--base-network G` of a file of G_ema only said "... has no G network (it has G_ema only)", naming no option."""
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    save_network(tmp_path / "toon.safetensors", tiny_generator(1))  # G_ema only, both
    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    common = ["--toon", str(tmp_path / "toon.safetensors"), "--base", str(tmp_path / "base.safetensors"),
              "--swap-res", "8", "-o", str(tmp_path / "blend.safetensors")]
    for option, file in (("--base-network", "base"), ("--toon-network", "toon")):
        result = run_main("blend", *common, option, "G")
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr.endswith(f"toonlib blend: error: {option} G: {tmp_path / file}.safetensors has no G "
                                      "network (it has G_ema only)\n"), result.stderr
    # both asked for G: the option of the file that lacks it; a G named in the toon's name: no option is to blame
    result = run_main("blend", *common, "--toon-network", "G", "--base-network", "G")
    assert result.stderr.endswith(f"error: --toon-network G: {tmp_path}/toon.safetensors has no G network (it has "
                                  "G_ema only)\n"), result.stderr
    common[1] += " (G)"
    result = run_main("blend", *common, "--base-network", "G")
    assert result.stderr.endswith(f"error: {tmp_path}/toon.safetensors has no G network (it has G_ema only)\n"), \
        result.stderr
    assert not (tmp_path / "blend.safetensors").exists()


def test_the_command_line_words_drop_only_an_options_own_python_form():
    """'--betas 0.5 0.99 (betas=(0.5, 0.99))' kept its Python form (a tuple in it); the rule that drops it leaves the
    Python form of another setting in place."""
    from toonlib.commands import for_command_line
    from toonlib.devices import default_device

    assert for_command_line("--betas 0.5 0.99 (betas=(0.5, 0.99)) from here on (the run had 0 0.99)") == \
        "--betas 0.5 0.99 from here on (the run had 0 0.99)"
    assert for_command_line("--image-seeds 0-3 (image_seeds=(0, 1, 2, 3)) from here on") == \
        "--image-seeds 0-3 from here on"
    assert for_command_line("--seed 1 is taken, but a model (c_dim=10) is not") == \
        "--seed 1 is taken, but a model (c_dim=10) is not"
    # a device torch lacks said "pass --device cpu,, or leave --device out"
    with pytest.raises(ValueError) as info:
        default_device("xla")  # no device of this kind without torch_xla
    assert for_command_line(info.value).endswith("pass --device cpu, or leave --device out (CUDA when available, else "
                                                 "the CPU)")


def test_words_given_to_a_command_of_options_only_say_so():
    """`toonlib blend toon.pkl ffhq.pkl` said only "the following arguments are required: --toon/--low, --swap-res,
    -o/--output" (thirty-eighth session's audit): the models go as options, and the example says how. Options'
    values, `--betas 0 0.99` and `--opt=value` stay taken."""
    for args, word in ((["blend", "toon.pkl", "ffhq.pkl"], "toon.pkl ffhq.pkl"),
                       (["blend", "--toon", "t.pkl", "ffhq.pkl", "--swap-res", "8", "-o", "b.pt"], "ffhq.pkl"),
                       (["finetune", "faces/"], "faces/")):
        result = run_main(*args)
        assert result.returncode == 2 and f"unrecognized arguments: {word}\n" in result.stderr, result.stderr
        assert "required" not in result.stderr
        assert result.stderr.rstrip().endswith(f"takes only options (toonlib {args[0]} --help): "
                                               f"{cli.EXAMPLES[args[0]][0]}")
    finetune = ["finetune", "--data", "f", "--betas", "0", "0.99", "--run-dir", "r", "--resume", "b"]
    assert cli._parse(finetune).betas == [0.0, 0.99]
    assert cli._parse(["blend", "--toon=t", "--swap-res", "8", "-ob.pt"]).output == "b.pt"
    # a negative value is a value, `--betas=0.9 0.99` argparse's to refuse, a command's --help shown (review)
    assert "--betas must be two numbers" in run_main(*finetune[:4], "-0.1", "0.99", *finetune[6:]).stderr
    assert "argument --betas: expected 2 arguments" in run_main("finetune", "--betas=0.9", "0.99").stderr
    assert run_main("blend", "toon.pkl", "--help").stdout.startswith("usage: toonlib blend")


def test_a_command_or_option_typed_in_capitals_is_suggested():
    """Caps lock: `toonlib TOONIFY`, `toonlib help TOONIFY` and `--SWAP-RES` got no "did you mean", which a lower-case
    misspelling gets (thirty-ninth session's audit); the suggestion is the name as it is typed."""
    for args, said in ((["TOONIFY", "me.jpg"], "TOONIFY: did you mean toonify?"),
                       (["help", "MODELS"], "MODELS: did you mean models?"),
                       (["toonify", "me.jpg", "-o", "t.png", "--SWAP-RES", "16"],
                        "--SWAP-RES: did you mean --swap-res?")):
        result = run_main(*args)
        assert result.returncode == 2 and result.stderr.rstrip().endswith(said), result.stderr


def test_help_before_a_command_is_that_commands_and_help_refuses_an_option():
    """`toonlib --help toonify` showed the top level's help, and `toonlib help -x` the top level's with status 0, the
    `-x` ignored (thirty-ninth session's audit)."""
    for args in (["--help", "toonify"], ["-h", "toonify"]):
        result = run_main(*args)
        assert result.returncode == 0 and result.stdout.startswith("usage: toonlib toonify"), result.stdout[:80]
    result = run_main("help", "-x")
    assert result.returncode == 2 and result.stderr.rstrip().endswith(
        "help takes a command name, not an option (-x): toonlib help COMMAND, or toonlib --help for the commands")
    assert run_main("help", "--help").stdout.startswith("usage: toonlib [-h]")
    assert run_main("--help", "toonify", "me.jpg").stdout.startswith("usage: toonlib [-h]")  # not "help takes one"


def test_psp_toonify_with_a_swap_res_fetches_the_models_it_reblends_with_first(tmp_path, offline_cache):
    """`--invert psp-toonify --swap-res 16` reads the toon model and its base to re-blend: offline, only the encoder
    was said missing (and once it was there, the toon model, without the option that takes its path; thirty-ninth
    session's audit). Now every file is named at once, the first with the option that takes a local file."""
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    result = run_cli("toonify", str(photo), "-o", str(tmp_path / "out"), "--invert", "psp-toonify", "--swap-res", "16",
                     env=offline_cache)
    assert result.returncode == 2 and "could not download 'ffhq-1024-tf'" in result.stderr, result.stderr
    assert "pass its path: --base PATH" in result.stderr
    for other in ("toonify-blended-tf", "psp-toonify"):
        assert f"This command needs '{other}' too, also not on this machine" in result.stderr, result.stderr


def test_a_latents_reblend_offline_needs_no_lpips_weights(tmp_path, offline_cache):
    """`toonify LATENT --swap-res 8` projects nothing: it fetched LPIPS' VGG16 (553 MB) all the same once the
    projecting commands fetched it with the models, and offline it failed where it wrote the toon (review)."""
    import torch
    from tiny import write_toonify_models

    from toonlib.projection import save_latent

    base, toon, G, _ = write_toonify_models(tmp_path)
    save_latent(torch.zeros(1, G.num_ws, G.w_dim), tmp_path / "me-latent.npz")
    result = run_cli("toonify", str(tmp_path / "me-latent.npz"), "-o", str(tmp_path / "me-8.png"), "--toon", str(toon),
                     "--base", str(base), "--swap-res", "8", env=offline_cache)
    assert result.returncode == 0 and (tmp_path / "me-8.png").is_file(), result.stderr
    assert not Path(offline_cache["TORCH_HOME"]).exists()


def test_ctrl_c_after_the_exit_handlers_ends_the_program_with_the_commands_status(tmp_path):
    """After the exit handlers Python resets its signal handlers to the default, and a finished `toonlib finetune`
    takes ~0.9 s more to end (torch's teardown): a Ctrl-C then killed it by SIGINT (130 in a shell, "interrupted")
    though the command was done (fortieth session's audit). Here an object of the program's sends the Ctrl-C as Python
    clears the modules, after the exit handlers."""
    program = tmp_path / "program.py"
    program.write_text("import os, runpy, signal, sys, time\n"
                       "class Late:\n"
                       "    def __del__(self, kill=os.kill, pid=os.getpid(), sig=signal.SIGINT, sleep=time.sleep):\n"
                       "        kill(pid, sig)\n"
                       "        sleep(0.2)\n"
                       "late = Late()\n"
                       "module, sys.argv = sys.argv[1], sys.argv[1:]\n"
                       "runpy.run_module(module, run_name='__main__')\n")
    for args, status, said in ((["toonlib", "models"], 0, ""),
                               (["toonlib", "info", str(tmp_path / "missing.pkl")], 2, "toonlib info: error: ")):
        result = subprocess.run([sys.executable, str(program), *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == status, result.stderr
        assert said in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr


def test_ctrl_c_while_the_train_module_imports_torch_is_interrupted_130(tmp_path):
    """`python -m toonlib.train` (torchrun's entry point) imported torch, numpy and matplotlib before it took Ctrl-C as
    an interruption: a Ctrl-C in its first seconds was a KeyboardInterrupt traceback and a death by SIGINT, or was lost
    in an import lock's callback and the run trained to the end, status 0. It is held through the imports, as
    `toonlib finetune`'s is: "interrupted", 130 (fortieth session's audit). Here the Ctrl-C comes as the training
    loop's module starts to be imported."""
    program = tmp_path / "program.py"
    program.write_text("import os, runpy, signal, sys\n"
                       "class CtrlC:\n"
                       "    def find_spec(self, name, path=None, target=None):\n"
                       "        if name == 'toonlib.train.loop':\n"
                       "            os.kill(os.getpid(), signal.SIGINT)\n"
                       "        return None\n"
                       "sys.meta_path.insert(0, CtrlC())\n"
                       "sys.argv = ['toonlib.train', *sys.argv[1:]]\n"
                       "runpy.run_module('toonlib.train', run_name='__main__')\n")
    result = subprocess.run([sys.executable, str(program), "--data", str(tmp_path), "--resume", "base.pkl",
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr
    assert result.stderr == "python -m toonlib.train: interrupted\n"
    assert not (tmp_path / "run").exists()


def test_models_given_a_file_points_to_info():
    """`toonlib models run1/network-snapshot-000000016.safetensors` said only that models takes only options: one who
    gives it a checkpoint wants to know what it holds, which `toonlib info` says (forty-fourth session's audit)."""
    snapshot = "run1/network-snapshot-000000016.safetensors"
    result = run_main("models", snapshot)
    assert result.returncode == 2
    assert result.stderr.endswith(f"unrecognized arguments: {snapshot}\n  toonlib models takes only options (toonlib "
                                  f"models --help): toonlib models\n  to see what a checkpoint holds: toonlib info "
                                  f"{snapshot}\n"), result.stderr
