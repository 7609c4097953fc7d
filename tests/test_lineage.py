"""Lineage: a toon model pairs with its own base by default, and an unrelated pair is told apart and warned about."""
from __future__ import annotations

import copy
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from tiny import write_toonify_models

from toonlib.blending import UNRELATED_DISTANCE, LineageWarning, blend, check_lineage, lineage_distance
from toonlib.checkpoints import Networks, load_network, save_network
from toonlib.models import MODELS
from toonlib.networks import Discriminator, Generator
from toonlib.pipeline import DEFAULT_BASE, Toonifier, default_base, toon_network_of
from toonlib.train import TrainConfig, finetune

TINY = dict(img_resolution=16, channel_base=256, channel_max=32)


def tiny_networks(seed: int) -> Networks:
    torch.manual_seed(seed)
    G = Generator(z_dim=32, w_dim=32, **TINY)
    return Networks(G_ema=copy.deepcopy(G), G=G, D=Discriminator(**TINY))


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """A random base, a child fine-tuned from it by toonlib's trainer (25 steps) and an unrelated model."""
    root = tmp_path_factory.mktemp("lineage")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(32):
        image = Image.new("RGB", (16, 16), (230, 150, 60))
        x, y, r = rng.integers(5, 11), rng.integers(5, 11), rng.integers(2, 5)
        ImageDraw.Draw(image).ellipse([x - r, y - r, x + r, y + r], fill=(30, 40, 160))
        image.save(data / f"{i:02d}.png")
    base = tiny_networks(0)
    save_network(root / "base.safetensors", base)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        snapshot = finetune(TrainConfig(data=str(data), resume=str(root / "base.safetensors"),
                                        run_dir=str(root / "run"),
                                        prepare="none", batch_size=4, kimg=0.1, snapshot_kimg=0.1, image_seeds=(0,),
                                        metric="none"), progress=False)
    finally:
        torch.set_num_threads(threads)
    child = load_network(snapshot)
    return base.G_ema, child, tiny_networks(1).G_ema


def test_fine_tuned_models_stay_close_unrelated_ones_do_not(family):
    base, child, stranger = family
    assert not torch.equal(child.G.synthesis.b8.conv1.weight, base.synthesis.b8.conv1.weight)  # it did train
    for G in (child.G_ema, child.G):
        assert lineage_distance(G, base) < 0.05 < UNRELATED_DISTANCE
    assert lineage_distance(stranger, base) > 1.2  # uncorrelated weights of equal spread: about sqrt(2)
    assert lineage_distance(base, base) == 0.0
    other_shape = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=256, channel_max=32)
    assert lineage_distance(other_shape, base) == float("inf")
    with pytest.warns(LineageWarning, match="is not fine-tuned from the base: their architectures differ") as caught:
        check_lineage(other_shape, base, "the toon", "the base")
    assert "inf" not in str(caught[0].message)  # was: "their weights are inf apart"


def test_an_encoders_decoder_is_warned_of_in_an_encoders_words():
    """The warnings about an encoder's decoder that is not the base said "the blend mixes two different faces" or
    "they cannot be blended. Pair the toon model with the base ...": no toon model and no blend is in that pair
    (thirty-ninth session's audit). Its own base is no mistake."""
    base, stranger = tiny_networks(0).G_ema, tiny_networks(1).G_ema
    other_shape = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=256, channel_max=32)
    for decoder, said in ((stranger, r"does not look like the base or a fine-tune of it: their mapping and "
                                     r"low-resolution weights are 1\.\d\d apart"),
                          (other_shape, "is neither the base nor a fine-tune of it: their architectures differ")):
        with pytest.warns(LineageWarning) as caught:
            check_lineage(decoder, base, "the decoder", "the base", encoder=True)
        message = str(caught[0].message)
        assert re.match(rf"the decoder {said}.*, so their W spaces differ and the base draws the encoder's codes "
                        r"\(latents of its decoder\) as another face: .* Give as the base \(--base, base=\) the "
                        r"model the encoder was trained with", message), message
        assert "blend" not in message and "toon model" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)
        check_lineage(base, base, "the decoder", "the base", encoder=True)


def test_blend_warns_only_for_an_unrelated_pair(family):
    base, child, stranger = family
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)
        blend(child.G, base, 8)
    with pytest.warns(LineageWarning, match=r"does not look fine-tuned from .*1\.\d\d apart"):
        blend(stranger, base, 8)


def test_toonifier_warns_for_an_unrelated_toon_once(tmp_path):
    """Once: re-blending said it again, in other words ("the low-res (toon) model ..."), a second line on the command
    line for the same pair."""
    base, toon, _, _ = write_toonify_models(tmp_path)  # two independent random models
    with pytest.warns(LineageWarning, match="the toon model does not look fine-tuned from the base model"):
        toonifier = Toonifier(base, toon, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)
        toonifier.set_blend(8)


def test_toonifier_refuses_a_base_whose_latents_the_toon_cannot_draw(tmp_path):
    _, toon, _, _ = write_toonify_models(tmp_path)  # 32 px
    small = Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=64, channel_max=16)
    with pytest.raises(ValueError, match=r"the toon model \(32 px\) draws W\+ latents of 8 x .* but the base model "
                                         r"\(16 px\) makes 6 x 16: pair"):
        Toonifier(small, toon, device="cpu")  # was: a ws shape error after the whole projection


def test_a_fine_tuning_snapshot_pairs_with_the_base_its_run_recorded(family, tmp_path):
    """`toonify --toon runs/toon/network-snapshot-....safetensors` took FFHQ 1024 as its base whatever the run was
    fine-tuned from (a 256 px toon: "makes 8 x 512", refused); the base the run recorded is the default now, where it
    is still there."""
    base, child, _ = family
    snapshot, recorded = child.meta["source"], child.meta["finetune"]["base"]
    assert default_base(snapshot) == default_base(child) == recorded and recorded.endswith("base.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)  # its own base: no warning
        toonifier = Toonifier(toon=snapshot, device="cpu")
    assert toonifier._base_source == recorded
    assert all(torch.equal(a, b) for a, b in zip(toonifier.base.state_dict().values(), base.state_dict().values()))
    run = Path(snapshot).parent  # a run started from that run's folder: the first run's base, through it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        grandchild = finetune(TrainConfig(data=child.meta["finetune"]["data"], resume=str(run),
                                          run_dir=str(tmp_path / "run2"), prepare="none", batch_size=4, kimg=0.004,
                                          snapshot_kimg=0.004, image_seeds=(0,), metric="none"), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert load_network(grandchild).meta["finetune"]["base"] == str(run)  # a folder, no model
    assert default_base(grandchild) == recorded
    # a run started from that run's snapshot file (what the error for a folder without training state advises) was
    # paired with that toon: the high resolutions of a toon, photos projected into it
    from_file = Networks(G_ema=child.G_ema, meta={"finetune": {**child.meta["finetune"], "base": snapshot}})
    assert default_base(from_file) == recorded
    moved = Networks(G_ema=child.G_ema, meta={"finetune": {**child.meta["finetune"], "base": str(tmp_path / "gone")}})
    assert default_base(moved) == DEFAULT_BASE  # a base that is no longer there: the usual default
    assert default_base(tmp_path / "no-such-file.safetensors") == DEFAULT_BASE


def test_notebook_01_names_the_base_of_a_run_started_from_a_snapshot_file(family, tmp_path, capsys):
    """01's last cell said "Blend it in 02_blend.ipynb with base_model = <the snapshot file the run started from>",
    an earlier toon (its helper followed run folders only), where `toonlib blend` finds the first run's base; a
    recorded base that is gone is named, with what to do, not replaced by the default without a word."""
    from toonlib.notebook import show_run

    _, child, _ = family
    snapshot, recorded = child.meta["source"], child.meta["finetune"]["base"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        newest = finetune(TrainConfig(data=child.meta["finetune"]["data"], resume=snapshot, run_dir=str(tmp_path / "r"),
                                      prepare="none", batch_size=4, kimg=0.004, snapshot_kimg=0.004, image_seeds=(0,),
                                      metric="none"), progress=False)
    finally:
        torch.set_num_threads(threads)
    show_run(tmp_path / "r")
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Blend it in 02_blend.ipynb with base_model = {recorded!r}, toon_model = {str(newest)!r}, "
        "toon_network = 'G_ema'")
    moved = Networks(G_ema=child.G_ema, meta={"finetune": {**child.meta["finetune"], "base": str(tmp_path / "gone")}})
    save_network(newest, moved)
    show_run(tmp_path / "r")
    said = capsys.readouterr().out.splitlines()
    assert said[-2].startswith(f"Blend it in 02_blend.ipynb with base_model = {str(tmp_path / 'gone')!r}, ")
    assert said[-1] == (f"(the base its run recorded, {tmp_path / 'gone'}, is not there: put it back, or set "
                        "base_model to the model the run was fine-tuned from)")


def test_blend_of_a_fine_tuning_snapshot_takes_its_recorded_base_as_toonify_does(family, tmp_path, capsys):
    """`toonlib blend --toon runs/toon/network-snapshot-....safetensors --swap-res 8 -o out` said "the following
    arguments are required: --base/--high" where toonify pairs the snapshot with the base its run recorded."""
    from toonlib import cli
    from toonlib.blending import toon_generator

    base, child, _ = family
    snapshot = child.meta["source"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)  # its own base: parent and child
        assert cli.main(["blend", "--toon", snapshot, "--swap-res", "8", "-o", str(tmp_path / "out.safetensors")]) == 0
        assert cli.main(["blend", "--toon", f"{snapshot} (G)", "--swap-res", "8", "-o",
                         str(tmp_path / "g.safetensors")]) == 0  # a generator named as `toonlib info` names it
    assert default_base(f"{snapshot} (G)") == child.meta["finetune"]["base"]
    expected = blend(toon_generator(snapshot), base, 8)
    written = load_network(tmp_path / "out.safetensors").G_ema
    assert all(torch.equal(a, b) for a, b in zip(written.state_dict().values(), expected.state_dict().values()))


def test_a_toon_model_pairs_with_its_own_base():
    assert default_base("toonify-blended-tf") == "ffhq-1024-tf"
    assert default_base("yang-cartoon") == "ffhq-1024-rosinality"
    assert default_base("jojogan-disney") == "ffhq-1024-rosinality"
    assert default_base("metfaces-1024") == "ffhq-1024"
    assert default_base("my-toon.safetensors") == DEFAULT_BASE
    # psp-toonify as the toon: its lineage is its decoder, a toon too (taken as the base, it drew every
    # "reconstruction" as a toon; thirty-third session's audit): that toon's base
    assert default_base("psp-toonify") == default_base("toonify-blended-rosinality") == "ffhq-1024-rosinality"
    import dataclasses

    from toonlib import models

    child = dataclasses.replace(models.MODELS["metfaces-1024"], name="metfaces-child", lineage="metfaces-1024")
    models.MODELS["metfaces-child"] = child  # a toon fine-tuned from a toon: its parent, not the parent's base
    try:
        assert default_base("metfaces-child") == "metfaces-1024"
    finally:
        del models.MODELS["metfaces-child"]
    # Which network of a toon checkpoint is re-blended.
    assert toon_network_of("toonify-blended-tf") == "G"  # Toonify's file: G is the toon model, G_ema the blend
    assert toon_network_of("yang-cartoon") == "G_ema"
    assert toon_network_of("toonify-blended-tf", "G_ema") == "G_ema"
    assert toon_network_of("my-toon.safetensors") is None
    with pytest.raises(ValueError, match="holds only a blended generator") as refused:
        toon_network_of("toonify-blended-rosinality")
    # It named a README section that does not exist ('Toon models'); now models that do offer re-blending.
    offered = re.search(r"such as (.*) \(`toonlib models` marks them", str(refused.value)).group(1).split(", ")
    assert len(offered) == 3 and all(MODELS[name].offers_swap_slider for name in offered)


def test_a_fine_tuning_snapshot_is_re_blended_from_its_g_ema_everywhere(family, tmp_path):
    """`toonify --toon runs/x/network-snapshot-N.safetensors --swap-res 16` re-blended the snapshot's G, the raw
    training copy, where `toonlib blend --toon` took its G_ema. Both take a training snapshot's G_ema now (toonlib's,
    NVIDIA's and rosinality's formats), and the G of a file in Toonify's layout (fine-tuned G, blended Gs)."""
    from toonlib import cli
    from toonlib.blending import toon_generator
    from toonlib.pipeline import toon_network_in

    base, child, _ = family
    assert not torch.equal(child.G.synthesis.b8.conv1.weight, child.G_ema.synthesis.b8.conv1.weight)
    snapshot = tmp_path / "network-snapshot.safetensors"
    save_network(snapshot, child)
    save_network(tmp_path / "base.safetensors", base)
    assert toon_network_in(load_network(snapshot)) == "G_ema"
    toonifier = Toonifier(tmp_path / "base.safetensors", snapshot, swap_res=8, device="cpu", detector="dlib")
    expected = blend(child.G_ema, base, 8).state_dict()
    assert all(torch.equal(t, expected[name]) for name, t in toonifier.generator.state_dict().items())
    assert cli.main(["blend", "--toon", str(snapshot), "--base", str(tmp_path / "base.safetensors"), "--swap-res",
                     "8", "-o", str(tmp_path / "b.safetensors")]) == 0
    written = load_network(tmp_path / "b.safetensors").G_ema.state_dict()
    assert all(torch.equal(t, expected[name]) for name, t in written.items())
    # NVIDIA's and rosinality's formats are training code's; a file without a fine-tuning record is Toonify's layout
    for meta, which in [({"format": "nvidia"}, "G_ema"), ({"format": "rosinality"}, "G_ema"),
                        ({"format": "toonlib", "origin": {"format": "nvidia"}}, "G_ema"),
                        ({"format": "tensorflow"}, "G"), ({"format": "toonlib"}, "G")]:
        assert toon_network_in(Networks(G_ema=child.G_ema, G=child.G, meta=meta)) == which, meta
        assert toon_generator(Networks(G_ema=child.G_ema, G=child.G, meta=meta)) is getattr(child, which)
    assert toon_network_in(Networks(G_ema=child.G_ema, meta={"format": "tensorflow"})) == "G_ema"  # no G


def test_the_base_given_as_the_toon_model_is_said(family, tmp_path, encoder_checkpoint):
    """`toonlib blend --toon e4e-ffhq` (the encoder's decoder is FFHQ) or the base given as --toon wrote a "blend" that
    is the base itself, and toonify drew the reconstruction as the toon, without a word. An encoder's decoder that
    is its base is no mistake: no warning there."""
    base, child, _ = family
    with pytest.warns(LineageWarning, match=r"^the low-res \(toon\) model has the same weights as the high-res "
                                            r"\(base\) model: every blend of them is that model, which draws faces"):
        blend(copy.deepcopy(base), base, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)
        blend(child.G_ema, base, 8)  # close, not equal: fine-tuned
        e4e = encoder_checkpoint("e4e_tiny")
        decoder = load_network(e4e).G_ema
        save_network(tmp_path / "base.safetensors", decoder)
        toon = copy.deepcopy(decoder)
        with torch.no_grad():
            toon.synthesis.b4.conv1.weight.mul_(1.01)
        Toonifier(tmp_path / "base.safetensors", toon, invert="e4e", encoder=e4e, detector="dlib", device="cpu")
    with pytest.warns(LineageWarning, match="^the toon model has the same weights as the base model"):
        Toonifier(tmp_path / "base.safetensors", tmp_path / "base.safetensors", device="cpu")


def test_a_saved_blend_pairs_with_the_base_it_records(family, tmp_path, monkeypatch):
    """`toonlib blend --toon metfaces-1024 -o mf.safetensors`, then `toonify --toon mf.safetensors`: the file records
    its base (ffhq-1024), and toonify took the default base 'ffhq-1024-tf' instead (a download of another model and a
    warning to pair the toon with its base), or at another resolution refused it as a model that "records no base"
    (audit). A blend's base, recorded as named ("FILE (G_ema)" too), is the default base; a moved one is said."""
    from toonlib import cli
    from toonlib.pipeline import missing_recorded_base

    _, child, _ = family
    snapshot, base_file = child.meta["source"], child.meta["finetune"]["base"]
    out = tmp_path / "blend.safetensors"
    assert cli.main(["blend", "--toon", snapshot, "--base", base_file, "--swap-res", "8", "-o", str(out)]) == 0
    recorded = f"{base_file} (G_ema)"  # the base file holds G and G_ema: the record names the network blended
    assert load_network(out).meta["blend"]["base"] == recorded
    assert default_base(out) == recorded and missing_recorded_base(out) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)
        assert Toonifier(toon=out, device="cpu")._base_source == recorded  # 16 px: not "records no base"
    # a registry base, named as its file of G and G_ema makes the record name it (review: "not there (moved or
    # deleted)", and ffhq-1024-tf taken instead)
    record = load_network(out).meta["blend"]
    registry = Networks(G_ema=child.G_ema, meta={"blend": {**record, "base": "ffhq-1024 (G_ema)"}})
    assert default_base(registry) == "ffhq-1024" and missing_recorded_base(registry) is None
    # a relative base path, as typed where the blend was made, from another folder: beside the blend (review)
    made_in = tmp_path / "A"
    made_in.mkdir()
    shutil.copy(base_file, made_in / "base.safetensors")
    relative = copy.deepcopy(child.G_ema)
    relative.set_origin(blend_record={**record, "base": "base.safetensors"})  # `toonlib blend --base base.safetensors`
    save_network(made_in / "blend.safetensors", relative)
    other = tmp_path / "B"
    other.mkdir()
    monkeypatch.chdir(other)
    assert default_base(made_in / "blend.safetensors") == str(made_in / "base.safetensors")
    gone = str(tmp_path / "moved-base.safetensors")
    moved = Networks(G_ema=child.G_ema, meta={"blend": {**load_network(out).meta["blend"], "base": gone}})
    assert default_base(moved) == DEFAULT_BASE and missing_recorded_base(moved) == gone
    with pytest.raises(ValueError, match=rf"is a 16 px model that records its base {re.escape(gone)}, which is not "
                                         r"there \(moved or deleted\)"):
        Toonifier(toon=moved, device="cpu")
