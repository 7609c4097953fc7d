"""pSp and e4e checkpoints: `load_network` returns their decoder, which renders the reference codes.

The checkpoints are rebuilt from their recipes (tests/fixtures/encoders) into a temporary folder
(~580 MB each, never committed); the references were computed by the original pSp / e4e code.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from encoder_fixtures import reference

from toonlib import load_network
from toonlib.cli import main

ENCODER_TYPES = {"psp_tiny": "GradualStyleEncoder", "e4e_tiny": "Encoder4Editing"}


@pytest.fixture(scope="module", params=sorted(ENCODER_TYPES))
def checkpoint(request, encoder_checkpoint):
    return request.param, encoder_checkpoint(request.param)


@torch.no_grad()
def test_decoder_renders_the_reference_images(checkpoint):
    name, path = checkpoint
    nets = load_network(path)
    ref = reference(name)
    images = nets.G_ema.synthesis(torch.from_numpy(ref["codes"]), noise_mode="const")  # the stored noises.*
    np.testing.assert_allclose(images.numpy(), ref["images"], atol=1e-4, rtol=1e-4)
    assert nets.G is None and nets.D is None
    assert (nets.config.img_resolution, nets.config.w_dim, nets.G_ema.num_ws) == (32, 512, 8)


def test_meta_records_the_encoder_and_w_avg_is_the_decoders_own(checkpoint):
    name, path = checkpoint
    nets = load_network(path)
    assert nets.meta["format"] == "psp" and nets.meta["encoder_type"] == ENCODER_TYPES[name]
    assert nets.meta["opts"]["start_from_latent_avg"] is True
    assert nets.meta["w_avg"] == "computed"
    # Not the encoder's latent_avg (the W+ offset, one row per style) but the mean of the decoder's mapping:
    # an independent estimate from other z agrees to the sampling error (std error ~0.01 here).
    w_avg = nets.G_ema.mapping.w_avg
    latent_avg = torch.load(path, weights_only=True, mmap=True)["latent_avg"]
    assert latent_avg.shape == (8, 512) and not any(torch.allclose(w_avg, row, atol=0.1) for row in latent_avg)
    with torch.no_grad():
        z = torch.randn([4096, 512], generator=torch.Generator().manual_seed(123))
        estimate = nets.G_ema.mapping(z, None)[:, 0].mean(0)
    assert (w_avg - estimate).abs().max() < 0.1 < w_avg.abs().max()


def test_converting_an_encoder_checkpoint_keeps_its_decoder_and_says_so(checkpoint, tmp_path, capsys):
    """`convert` wrote the decoder alone without a word (578 MB -> 86 MB), and `info` of the new file still named an
    encoder in it, which `--encoder` then refused as a generator checkpoint."""
    name, path = checkpoint
    out = tmp_path / "decoder.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (f"wrote {out} (its decoder alone: toonlib's format holds "
                                                        f"generators; --encoder takes {path} itself)")
    assert main(["info", str(out)]) == 0
    paper = {"GradualStyleEncoder": "a pSp", "Encoder4Editing": "an e4e"}[ENCODER_TYPES[name]]
    assert capsys.readouterr().out.startswith(f"toonlib checkpoint: the decoder of {paper} encoder (the encoder is not "
                                              "in this file), 32x32")
    # converted again: no encoder to give --encoder (it said "--encoder takes decoder.safetensors itself", which
    # load_encoder refuses; thirty-eighth session's audit)
    assert main(["convert", str(out), str(tmp_path / "again.safetensors")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'again.safetensors'}"


def test_cli_info_names_the_encoder(checkpoint, capsys):
    name, path = checkpoint
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    # it began 'psp checkpoint: 32x32, ...' for both papers, and named the encoder's class only, at the end
    assert out.splitlines()[0] == {
        "GradualStyleEncoder": "psp checkpoint: a pSp encoder (GradualStyleEncoder; toonify --invert psp, or "
                               "psp-toonify where its decoder draws toons) and its decoder, 32x32, z 512, w 512 x 8, "
                               "mapping 8 layers, G_ema",
        "Encoder4Editing": "psp checkpoint: an e4e encoder (Encoder4Editing; toonify --invert e4e or e4e+optimize) and "
                           "its decoder, 32x32, z 512, w 512 x 8, mapping 8 layers, G_ema"}[ENCODER_TYPES[name]]
