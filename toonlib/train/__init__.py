"""Fine-tuning a pretrained StyleGAN2 on a few hundred images, Toonify-style (docs/design.md section 8).

    from toonlib.train import TrainConfig, finetune
    snapshot = finetune(TrainConfig(data="toons/", resume="ffhq-256-noaug", run_dir="runs/toons"))

The recipe is StyleGAN2's (Karras et al. 2020) with ADA (Karras et al. 2020b), with the defaults that
stylegan2-ada-pytorch uses when it starts from a pretrained model, plus the freezing options used for toon
models: Freeze-D (Mo et al. 2020), FreezeG (frozen low-resolution synthesis blocks) and a frozen mapping
network (FreezeSG). Under `torchrun` each process trains its share of every minibatch; gradients, ADA
statistics, `w_avg` and the path-length mean are averaged over processes so that all of them hold identical
networks, and only the first process downloads and writes files:

    torchrun --nproc_per_node=2 -m toonlib.train --data toons/ --resume ffhq-256-noaug --run-dir runs/toons

The package's modules: config (TrainConfig and its defaults), recipe (formulas, freezing), loop (Trainer,
finetune), resume (whether a run folder's state may continue, what a resumed run changed), distributed (torchrun
processes), snapshots (run-folder files, resume), metrics_log (metrics.jsonl, metrics.png), arguments (command-line
options).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "add_train_arguments": "arguments", "config_from_args": "arguments", "TrainConfig": "config",
    "Distributed": "distributed", "Trainer": "loop", "finetune": "loop", "plot_metrics": "metrics_log",
    "read_metrics": "metrics_log", "d_layer_names": "recipe", "ema_beta": "recipe", "lazy_regularization": "recipe",
    "update_ema": "recipe", "latest_snapshot": "snapshots", "newest_state": "snapshots", "snapshot_paths": "snapshots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The package's exports, imported on first use (as `toonlib`'s): the command line's parser reads the options
    of fine-tuning without importing torch."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'toonlib.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
