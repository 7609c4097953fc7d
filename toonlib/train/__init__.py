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
finetune), distributed (torchrun processes), snapshots (run-folder files, resume), metrics_log (metrics.jsonl,
metrics.png), arguments (command-line options).
"""
from __future__ import annotations

from .arguments import add_train_arguments, config_from_args
from .config import TrainConfig
from .distributed import Distributed
from .loop import Trainer, finetune
from .metrics_log import plot_metrics, read_metrics
from .recipe import d_layer_names, ema_beta, lazy_regularization, update_ema
from .snapshots import latest_snapshot, newest_state

__all__ = ["Distributed", "TrainConfig", "Trainer", "add_train_arguments", "config_from_args", "d_layer_names",
           "ema_beta", "finetune", "latest_snapshot", "lazy_regularization", "newest_state", "plot_metrics",
           "read_metrics", "update_ema"]
