"""pSp and e4e checkpoints: the decoder they carry is a rosinality generator.

The published files (`psp_ffhq_encode.pt`, `psp_ffhq_toonify.pt`, `e4e_ffhq_encode.pt`, ...) are
`torch.save({"state_dict", "opts", "latent_avg"})`: `state_dict` holds the encoder under `encoder.` and a
rosinality `Generator` under `decoder.`; `opts` is a plain dict of the training options (`encoder_type`,
`output_size`, ...). Here the decoder becomes the checkpoint's G_ema, so `load_network(psp_file)` is
the generator those codes are rendered with (for `psp_ffhq_toonify.pt`, the Toonify blend). The encoder
itself is read by `toonlib.encoders`.

`w_avg`: the file's `latent_avg` ([n_styles, w_dim]) is the encoder's W+ offset, the point its outputs
are added to (`start_from_latent_avg`). It starts as the base model's mean w, but it belongs to the
encoder's training, and rosinality generators store no mean latent of their own. So the decoder's
`mapping.w_avg` is computed from its own mapping network, as for rosinality files without
`latent_avg`, and `meta["w_avg"]` says "computed".
"""
from __future__ import annotations

import argparse

from .common import CheckpointError, Networks
from .rosinality import is_generator_state, read_generator

DECODER_PREFIX = "decoder."


def is_psp(obj: object) -> bool:
    """A dict whose `state_dict` holds a rosinality generator under `decoder.`."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    return isinstance(state, dict) and is_generator_state(decoder_state(state))


def decoder_state(state: dict) -> dict:
    """The rosinality generator inside a pSp / e4e `state_dict`: its `decoder.` keys, without the prefix."""
    return {k[len(DECODER_PREFIX):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(DECODER_PREFIX)}


def read_psp(obj: dict, source: str = "") -> Networks:
    """Networks with the decoder of a pSp / e4e checkpoint as G_ema; meta records the encoder type and options."""
    opts = obj.get("opts")
    opts = vars(opts) if isinstance(opts, argparse.Namespace) else opts
    if opts is not None and not isinstance(opts, dict):
        raise CheckpointError(f"{source}: pSp/e4e checkpoint whose 'opts' is a {type(opts).__name__}, not a dict")
    opts = dict(opts or {})
    G_ema = read_generator(decoder_state(obj["state_dict"]), f"{source} [decoder]")
    meta = {"format": "psp", "source": source, "encoder_type": opts.get("encoder_type"), "w_avg": "computed",
            "opts": opts}
    return Networks(G_ema=G_ema, meta=meta)
