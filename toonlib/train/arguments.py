"""Command-line options of fine-tuning, shared by `toonlib finetune` and `python -m toonlib.train` (torchrun)."""
from __future__ import annotations

import argparse
import dataclasses
import os

from ..options import MIN_IMAGES, PREPARE_MODES
from .config import (
    AUGMENT_MODES,
    METRIC_MODES,
    MIXED_PRECISION_MODES,
    TrainConfig,
    TrainConfigError,
    option_name,
    option_text,
)

__all__ = ["EXIT_STATUS", "add_train_arguments", "config_from_args", "finished", "main"]

#: The exit statuses of fine-tuning (`toonlib finetune`, `python -m toonlib.train`), the epilog of their --help.
EXIT_STATUS = ("exit status:\n"
               "    0  all done (also when the run had already reached --kimg: nothing to train)\n"
               "    2  bad usage; unusable images, checkpoint or settings; the run folder in use;\n"
               "       a full disk (one line says what and how to fix it)\n"
               "  130  interrupted (Ctrl-C, SIGTERM: kill, timeout, a job scheduler, or SIGHUP: a closed\n"
               "       terminal): the run is saved where it stopped, and the same command continues it (stopped\n"
               "       before training began, while the images were prepared or the base downloaded, it starts\n"
               "       again)\n"
               "  141  output closed early (the reader of `| head` ended): stopped, said on stderr; the run is\n"
               "       saved up to its newest snapshot, and the same command continues it (stopped before\n"
               "       its first snapshot, nothing is saved: it starts again)")


def finished(snapshot: os.PathLike | str) -> str:
    """What a finished fine-tuning prints: its last snapshot, and the commands that use it, ready to copy (a run
    ended with the snapshot's name alone, and `toonlib blend` then asked for --base). Their swap resolution is below
    the model's (at it, the whole toon model) and above the run's --freeze-g (`_swap_res`); where the base the run
    recorded is gone, they keep `--base BASE` and a line says so (they failed: "... which is not there (moved or
    deleted)"; fortieth session's audit)."""
    import shlex

    from ..pipeline import missing_recorded_base

    toon = shlex.quote(str(snapshot))
    swap, why = _swap_res(snapshot)
    missing = missing_recorded_base(snapshot)
    base = " --base BASE" if missing else ""
    lines = [f"last snapshot: {snapshot}",
             f"to compare swap resolutions: toonlib blend --toon {toon}{base} --swap-res {swap} -o blended.safetensors "
             "--grid grid.png",
             f"to toonify a photo:          toonlib toonify photo.jpg --toon {toon}{base} --swap-res {swap} -o toons/"]
    if why:
        lines.append(why)
    if missing:
        lines.append(f"(the base the run recorded, {missing}, is not there (moved or deleted): put it back, or give "
                     "the model the run was fine-tuned from as BASE)")
    return "\n".join(lines)


def _swap_res(snapshot: os.PathLike | str) -> tuple[int, str]:
    """The swap resolution of the commands `finished` prints, and a line that says why where it is not the default:
    below the model's resolution, and above the run's --freeze-g (its config.json beside the snapshot), whose blocks
    are the base's bit for bit: a blend at or below it is the base model itself (README's `--freeze-g 32` beside the
    default swap 32 printed commands that gave back the base; fortieth session's audit). A run frozen up to half the
    model's resolution leaves no blend between the two: the commands take the whole toon model, said."""
    import json
    from pathlib import Path

    from ..checkpoints.native import read_resolution
    from ..options import DEFAULT_SWAP_RES
    from .snapshots import CONFIG_FILE

    resolution = read_resolution(snapshot)  # None: not toonlib's file, the default
    swap = DEFAULT_SWAP_RES if resolution is None else min(DEFAULT_SWAP_RES, resolution // 2)
    try:
        freeze_g = json.loads((Path(snapshot).parent / CONFIG_FILE).read_text()).get("freeze_g") or 0
    except (OSError, ValueError, AttributeError):  # no run's record beside it (a copied snapshot): as given
        return swap, ""
    if not isinstance(freeze_g, int) or freeze_g < swap:
        return swap, ""
    swap = 2 * freeze_g if resolution is None else min(2 * freeze_g, resolution)
    whole = f", and at {swap} px, the model's resolution, the whole toon model" if swap == resolution else ""
    return swap, (f"(the run kept the base model's blocks up to {freeze_g} px, --freeze-g {freeze_g}: a blend at "
                  f"{freeze_g} px or below is the base model itself{whole})")


def _optional_float(text: str) -> float | None:
    """A number, or 'none' for None."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _seeds(text: str) -> tuple[int, ...]:
    """`networks.parse_seeds`, imported when an option needs it: the parser builds without torch."""
    from ..networks import parse_seeds

    try:
        return tuple(parse_seeds(text))
    except ValueError as exc:  # its message says what is wrong and how to write it ('0-3,7')
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one option per TrainConfig field (unset options keep TrainConfig's defaults) and --no-progress
    (dest `progress`, finetune's argument); the exit statuses (`EXIT_STATUS`) become the parser's epilog."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

    def option(name: str, help: str, **kwargs) -> None:
        default = kwargs.pop("shown_default", None)
        # as typed: '--ema-rampup none', '--betas 0 0.99' (it showed the tuple '(0.0, 0.99)', thirty-eighth session's
        # audit), '--augment-p 0'
        default = option_text(name, defaults.get(name)) if default is None else default
        parser.add_argument(option_name(name), dest=name, default=argparse.SUPPRESS,
                            help=f"{help} (default: {default})", **kwargs)

    parser.epilog = EXIT_STATUS
    parser.add_argument("--data", required=True,
                        help=f"folder or .zip of training images, at least {MIN_IMAGES} (subfolders too); the run "
                             "folder must not be inside it")
    parser.add_argument("--resume", required=True,
                        help="base checkpoint with D: a path, URL or registry name such as ffhq-256-noaug; or a run "
                             "folder: the --run-dir folder itself continues that run, another run's folder starts "
                             "this one from the networks of its newest valid training state")
    parser.add_argument("--run-dir", dest="run_dir", required=True,
                        help="folder for snapshots and training states; the run there is resumed from its newest "
                             "valid training state")
    option("kimg", "training length in thousands of real images", type=float)
    option("batch_size", "minibatch size over all processes", type=int)
    option("batch_gpu", "micro-batch per process (gradient accumulation when smaller)", type=int,
           shown_default="batch_size / processes")
    option("gamma", "R1 weight", type=float, shown_default="0.0002 * resolution^2 / batch_size, NVIDIA's rule")
    option("r1_interval", "R1 every this many minibatches", type=int)
    option("pl_weight", "path-length regulariser weight (0 = off)", type=float)
    option("pl_interval", "path-length regulariser every this many minibatches", type=int)
    option("lr", "Adam learning rate", type=float, shown_default="0.0025, or 0.002 at 1024 px")
    option("betas", "Adam betas", type=float, nargs=2)
    option("ema_kimg", "G_ema half-life in kimg", type=float, shown_default="batch_size * 10 / 32")
    option("ema_rampup", "G_ema half-life ramp-up ratio, or 'none'", type=_optional_float)
    option("style_mixing", "style mixing probability", type=float)
    option("augment", "augmentation: adaptive p, fixed p or none", choices=AUGMENT_MODES)
    option("augment_p", "initial (ada) or fixed augmentation probability", type=float)
    option("ada_target", "ADA target for r_t = E[sign(D(real))]", type=float)
    option("ada_interval", "adjust p every this many minibatches", type=int)
    option("ada_kimg", "kimg for p to go from 0 to 1 at most", type=float)
    option("freeze_d", "freeze D's first k layers (Freeze-D)", type=int)
    option("freeze_g", "freeze G's synthesis blocks up to this resolution, e.g. 32 (FreezeG; 0 = none)", type=int)
    option("freeze_mapping", "freeze the mapping network, keeping the base model's W space (FreezeSG)",
           action=argparse.BooleanOptionalAction)
    option("mirror", "add x-flipped copies of the images", action=argparse.BooleanOptionalAction)
    option("snapshot_kimg", "snapshot every this many kimg", type=float)
    option("metric", "quality metric at each snapshot (auto: KID on CUDA, none on the CPU)", choices=METRIC_MODES)
    option("metric_images", "generated images per metric evaluation", type=int)
    option("image_seeds", "seeds of the fakes grid, e.g. 0-15", type=_seeds, shown_default="0-15")
    option("seed", "random seed", type=int)
    option("mixed_precision", "float16 blocks on CUDA as the checkpoint says, or off", choices=MIXED_PRECISION_MODES)
    option("device", "cpu, cuda, cuda:1, ...", shown_default="cuda if available")
    option("prepare", "how images become squares of the model's size", choices=PREPARE_MODES)
    option("resolution", "training resolution; must be the base model's", type=int, shown_default="the model's")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar: one line per snapshot instead")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `add_train_arguments` options (other attributes of `args` are ignored). Its
    ValueError names the options as they are typed (`--kimg must be > 0`), not TrainConfig's fields."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    except TrainConfigError as exc:
        raise ValueError(exc.text(option_name, command_line=True)) from None


def main(argv: list[str] | None = None) -> int:
    """`python -m toonlib.train` / `torchrun ... -m toonlib.train`: exit 0 when done, 2 with a message on bad input,
    130 when interrupted (Ctrl-C); its lines name the program, as `toonlib finetune`'s do."""
    from ..cli import _did_you_mean, _option_names, _refuse_empty, output_closed
    from ..commands import for_command_line
    from ..messages import expected_errors, interrupted, interrupts_held

    parser = add_train_arguments(argparse.ArgumentParser(
        prog="python -m toonlib.train", description="Fine-tune a StyleGAN2 checkpoint on a folder of images.",
        formatter_class=argparse.RawDescriptionHelpFormatter))  # the exit-status table as written
    # as `toonlib finetune` checks them: a misspelt option got no "did you mean", an empty --data ("$DATA" unset) was
    # "TrainConfig.data is required" (thirty-second session's CLI audit)
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}"
                     + _did_you_mean([arg for arg in extra if arg.startswith("-")], _option_names(parser)))
    _refuse_empty(parser, args)
    main_process = int(os.environ.get("RANK", "0")) == 0
    try:
        # torch, numpy and matplotlib, with Ctrl-C held as `cli._run` holds it: an interrupt while they loaded was a
        # traceback and a death by SIGINT, or lost in an import lock's callback (the run trained on, status 0;
        # fortieth session's audit)
        with interrupts_held():
            from .loop import finetune
        path = finetune(config_from_args(args), progress=args.progress)
    except BrokenPipeError:  # `| head`: an OSError, it was "error: [Errno 32] Broken pipe", exit 2 (audit)
        return output_closed(parser.prog if main_process else None, args.run_dir, getattr(args, "kimg", None))
    except BaseException as exc:  # OSError: a run folder in use, ...
        if interrupted(exc):  # Trainer.run has said where the run was saved, if it was
            parser.exit(130, f"{parser.prog}: interrupted\n" if main_process else None)
        # asked only now, as `cli._run` does: `expected_errors` imports torch
        if not isinstance(exc, expected_errors()):
            raise
        # named, as `toonlib finetune`'s lines are: "error: ..." alone named no program in a torchrun log (audit)
        parser.exit(2, f"{parser.prog}: error: {for_command_line(exc)}\n")
    if main_process:
        try:
            print(finished(path), flush=True)
        except BrokenPipeError:  # trained: nothing to say
            return output_closed(None)
    return 0
