"""toonlib's own format: safetensors written atomically, found by content; the old torch files still load."""
from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES
from safetensors import SafetensorError
from safetensors.torch import save_file

from toonlib import load_network, save_network
from toonlib.checkpoints import CheckpointError, Networks, native
from toonlib.cli import main
from toonlib.messages import ToonlibWarning


@pytest.fixture(scope="module")
def nets() -> Networks:
    return load_network(FIXTURES / "ada_tiny.pkl")


def assert_same_networks(a: Networks, b: Networks) -> None:
    for x, y in ((a.G_ema, b.G_ema), (a.G, b.G), (a.D, b.D)):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.config == y.config
            sx, sy = x.state_dict(), y.state_dict()
            assert sx.keys() == sy.keys() and all(torch.equal(sx[k], sy[k]) for k in sx)


def test_file_written_by_the_first_toonlib_format_still_loads(nets, tmp_path):
    """Version 1 was `torch.save` of a dict of configs and state dicts; such files are read, never written."""
    old = {"format": "toonlib", "version": 1,
           "config": {"G": nets.config.to_dict() | {"mapping_layer_features": None},  # as version 1 wrote it
                      "D": nets.D.config.to_dict()},
           "G_ema": nets.G_ema.state_dict(), "G": nets.G.state_dict(), "D": nets.D.state_dict(),
           "meta": {"origin": {"format": "nvidia", "source": "ada_tiny.pkl"}}}
    torch.save(old, tmp_path / "old.pt")
    loaded = load_network(tmp_path / "old.pt")
    assert_same_networks(loaded, nets)
    assert loaded.meta["format"] == "toonlib" and loaded.meta["origin"]["format"] == "nvidia"
    # Converting it gives a safetensors file with the same networks.
    again = load_network(save_network(tmp_path / "new.safetensors", loaded))
    assert_same_networks(again, nets)
    assert (tmp_path / "new.safetensors").read_bytes()[8:9] == b"{"  # safetensors: header length, then JSON


@pytest.mark.parametrize("source", ["ada_tiny.pkl", "toonlib"])
def test_loading_leaves_torchs_random_stream_alone(nets, tmp_path, source):
    """A checkpoint's networks are built without drawing random initial weights (`networks.uninitialized`), so
    `torch.manual_seed(0)` before loading gives the z it gives after (the draws were most of the load time), and
    what is loaded is the file's weights exactly."""
    path = FIXTURES / source if source.endswith(".pkl") else save_network(tmp_path / "net.safetensors", nets)
    torch.manual_seed(0)
    loaded = load_network(path)
    z = torch.randn(4, loaded.G_ema.z_dim)
    torch.manual_seed(0)
    assert torch.equal(z, torch.randn(4, loaded.G_ema.z_dim))
    assert_same_networks(loaded, nets)


@pytest.mark.parametrize("name, reader", [("net.safetensors", None), ("net.pt", "torch.load"),
                                          ("net.pkl", "pickle.load"), ("net", None)])
def test_found_by_content_under_any_name(nets, tmp_path, name, reader):
    """toonlib reads its files under any name; a name that is not *.safetensors is written as asked, with a
    warning that other tools go by the suffix (a .pkl or .pt promises a reader that fails on it)."""
    if name.endswith(".safetensors"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            path = save_network(tmp_path / name, nets)
    else:
        advice = rf" \({reader} cannot read it\)" if reader else ""
        with pytest.warns(ToonlibWarning, match=rf"wrote toonlib's format, a safetensors file, to '.*{name}': toonlib "
                                                rf"reads it under any name, but other tools choose their reader by "
                                                rf"the suffix{advice}; name it 'net.safetensors'$"):
            path = save_network(tmp_path / name, nets)
    assert_same_networks(load_network(path), nets)


def test_weights_that_are_nan_are_said_and_keep_the_origin(tmp_path):
    """A model holding NaN weights (a fine-tuning run's snapshot after it diverged) loaded, blended and toonified
    without a word, every toon black; its `loaded_from` and `blend_record` were None at once, the NaN fingerprint
    equal to nothing (thirty-fourth session's API audit)."""
    from tiny import tiny_generator

    from toonlib import blend

    good, broken = tiny_generator(0), tiny_generator(0)
    with torch.no_grad():
        broken.synthesis.b16.conv0.weight[0, 0, 0, 0] = float("nan")
        broken.synthesis.b32.conv1.bias.fill_(float("inf"))
    path = save_network(tmp_path / "diverged.safetensors", Networks(G_ema=broken, G=good))
    with pytest.warns(ToonlibWarning) as said:
        nets = load_network(path)
    assert [str(w.message) for w in said if w.category is ToonlibWarning] == [  # not the GC's ResourceWarnings
        f"{path}: its G_ema holds weights that are NaN or infinite (synthesis.b16.conv0.weight, "
        "synthesis.b32.conv1.bias), so it draws black images (a fine-tuning run's snapshots after the training "
        "diverged are so): use an earlier snapshot, or the model it was fine-tuned from"]
    assert nets.G_ema.loaded_from == f"{path} (G_ema)"
    blended = blend(nets.G_ema, good, 8)
    assert blended.blend_record is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_network(save_network(tmp_path / "good.safetensors", good))  # nothing said of finite weights


def test_save_network_names_a_wrong_argument(nets, tmp_path):
    with pytest.raises(TypeError, match=r"takes a file path, then a Generator or Networks; got Generator, PosixPath "
                                        r"\(swapped\)"):
        save_network(nets.G_ema, tmp_path / "g.safetensors")  # was: an AttributeError deep in the writer
    with pytest.raises(TypeError, match="got PosixPath, str$"):
        save_network(tmp_path / "g.safetensors", "ffhq-1024-tf")  # a name, not the loaded networks
    assert list(tmp_path.iterdir()) == []


def test_networks_print_on_one_line_and_load_network_names_a_wrong_argument(nets):
    """A Networks printed its three module trees (hundreds of lines at 1024 px) in a REPL; load_network(G) was
    "expected str, bytes or os.PathLike object, not Generator"."""
    assert repr(nets) == ("Networks(G_ema=Generator(img_resolution=32, z_dim=64, w_dim=32, num_ws=8), "
                          "G=Generator(img_resolution=32, z_dim=64, w_dim=32, num_ws=8), "
                          f"D=Discriminator(img_resolution=32, img_channels=3), meta={{'format': 'nvidia', "
                          f"'source': {nets.meta['source']!r}}})")
    assert repr(Networks(G_ema=nets.G_ema, meta={"note": 1})).endswith("G=None, D=None, meta={...})")
    with pytest.raises(TypeError, match="got Generator: that is loaded already"):
        load_network(nets.G_ema)
    with pytest.raises(TypeError, match=r"a path, an http\(s\) URL or a registry name .*; got NoneType$"):
        load_network(None)
    # load_generator(G, which="G") gave G itself back: `which` was ignored without a word
    from toonlib import load_generator

    assert load_generator(nets.G_ema) is nets.G_ema and load_generator(nets, which="G") is nets.G
    with pytest.raises(ValueError, match=r"^which='G' picks a network of a checkpoint, and a Generator is one network "
                                         r"already: leave which out, or give the checkpoint"):
        load_generator(nets.G_ema, which="G")


def test_generator_shared_by_g_and_g_ema_is_saved(nets, tmp_path):
    """safetensors refuses tensors that share memory; a Networks may hold one generator twice."""
    path = save_network(tmp_path / "twice.safetensors", Networks(G_ema=nets.G_ema, G=nets.G_ema))
    loaded = load_network(path)
    assert torch.equal(loaded.G.synthesis.b32.torgb.weight, loaded.G_ema.synthesis.b32.torgb.weight)


def test_a_g_of_another_config_than_g_ema_is_refused_before_writing(nets, tmp_path):
    """The file keeps G_ema's config alone: a G of another resolution was written and then failed to load ("the
    weights do not fit"); one of another conv_clamp came back with G_ema's, silently."""
    import dataclasses

    from toonlib.networks import Generator

    for change in (dict(img_resolution=64), dict(conv_clamp=64.0)):
        G = Generator(**{**dataclasses.asdict(nets.G_ema.config), **change})
        name = next(iter(change))
        with pytest.raises(ValueError, match=rf"^G_ema and G differ \({name} .+\): a toonlib file keeps one generator "
                                             r"config, so this one could not be read back; save each generator on its "
                                             r"own \(save_network\(path, G\)\)$"):
            save_network(tmp_path / "mixed.safetensors", Networks(G_ema=nets.G_ema, G=G))
        assert not (tmp_path / "mixed.safetensors").exists()


def test_a_generators_state_dict_alone_is_told_what_it_lacks(nets, tmp_path):
    """torch.save(G.state_dict()) was "not a known StyleGAN2 checkpoint (contents: [...])" with its 300 keys listed
    (4,759 characters for a 256 px model) and no word of what to do; other dicts list a dozen keys at most."""
    torch.save(nets.G_ema.state_dict(), tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match=r"g\.pt holds a generator's weights alone "
                                              r"\(torch\.save\(G\.state_dict\(\)\)\), without its architecture: load "
                                              r"it into a toonlib\.Generator"):
        load_network(tmp_path / "g.pt")
    torch.save({f"key{i:03}": torch.zeros(1) for i in range(300)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"\(contents: 'key000', .*'key011' and 288 more\)$") as caught:
        load_network(tmp_path / "other.pt")
    assert len(str(caught.value)) < 400


def test_zips_that_are_not_torch_files_are_named(tmp_path, capsys):
    """Both were "a torch file that could not be read ... delete it and download it again": wrong, and bad advice."""
    import zipfile

    import numpy as np

    np.savez(tmp_path / "latent.npz", w=np.zeros((1, 8, 32), np.float32))
    with pytest.raises(CheckpointError, match=r"latent.npz is a NumPy .npz file \(arrays w\), not a network: a "
                                              "latent such as `toonlib project` writes"):
        load_network(tmp_path / "latent.npz")
    assert main(["info", str(tmp_path / "latent.npz")]) == 2  # the command line's way to it, not Python's
    assert capsys.readouterr().err.endswith("a latent such as `toonlib project` writes; `toonlib toonify` of it draws "
                                            "its toon (-o toon.png)\n")
    # rosinality's projector output was "a torch file but not a known StyleGAN2 checkpoint (contents: 'me.png')"
    torch.save({"me.png": {"latent": torch.zeros(32), "noise": []}}, tmp_path / "projected.pt")
    assert main(["info", str(tmp_path / "projected.pt")]) == 2
    assert capsys.readouterr().err == (
        f"toonlib info: error: {tmp_path / 'projected.pt'} is a torch file of latents (rosinality's projector output: "
        "image name -> {'latent': ...}), not a network: a latent such as `toonlib project` writes; `toonlib toonify` "
        "of it draws its toon (-o toon.png)\n")
    np.savez(tmp_path / "noise.npz", z=np.zeros(3), real=np.zeros(3))  # no w: it was called a latent too
    assert main(["info", str(tmp_path / "noise.npz")]) == 2
    assert capsys.readouterr().err.endswith("noise.npz is a NumPy .npz file (arrays z, real), neither a network nor a "
                                            "latent (whose array is named w)\n")
    with zipfile.ZipFile(tmp_path / "model.zip", "w") as archive:
        archive.write(FIXTURES / "ada_tiny.pkl", "stylegan2/ada_tiny.pkl")
    with pytest.raises(CheckpointError, match=r"model.zip is a zip archive \(stylegan2/ada_tiny.pkl\), not a "
                                              "checkpoint: unpack it"):
        load_network(tmp_path / "model.zip")
    assert main(["info", str(tmp_path / "model.zip")]) == 2


def test_foreign_truncated_and_future_files_are_refused(nets, tmp_path):
    save_file({"weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="safetensors file but not a toonlib network"):
        load_network(tmp_path / "other.safetensors")

    data = save_network(tmp_path / "good.safetensors", nets).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file.*download or convert it again"):
        load_network(tmp_path / "cut.safetensors")

    tensors = {f"G_ema.{k}": v.contiguous() for k, v in nets.G_ema.state_dict().items()}
    save_file(tensors, tmp_path / "future.safetensors",
              metadata={"format": "toonlib", "version": "3", "config": json.dumps({"G": nets.config.to_dict()})})
    with pytest.raises(CheckpointError, match="version '3'.*Upgrade toonlib"):
        load_network(tmp_path / "future.safetensors")


def test_cli_convert_writes_safetensors(nets, tmp_path, capsys):
    out = tmp_path / "ada.safetensors"
    assert main(["convert", str(FIXTURES / "ada_tiny.pkl"), str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"
    assert_same_networks(load_network(out), nets)
    # another model at -o is replaced, and said so (it was replaced without a word)
    assert main(["convert", str(FIXTURES / "ada_tiny.pkl"), str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out} (it replaced the file that was there)"


@pytest.mark.parametrize("name", ["ada.pt", "ada.pkl", "ada"])
def test_cli_convert_refuses_a_name_that_promises_another_format(tmp_path, capsys, name):
    """The output name is checked first: before the input is read (or downloaded), nothing is written."""
    code = main(["convert", str(tmp_path / "not-there.pkl"), str(tmp_path / name)])
    err = capsys.readouterr().err
    assert code == 2
    assert "safetensors" in err and f"name the output {tmp_path / 'ada.safetensors'}" in err
    assert list(tmp_path.iterdir()) == []


def test_a_header_length_that_starts_like_a_pickle_reads_and_is_told_cut_short(nets, tmp_path):
    """A safetensors header whose length's low byte is 0x80 (1 header size in 256, a blend record's length can make
    it so) starts like a pickle: the cache called the whole file damaged, and cut short it was unpickled."""
    path = tmp_path / "net.safetensors"
    note = ""
    while True:
        save_network(path, Networks(G_ema=nets.G_ema, meta={"note": note}))
        data = path.read_bytes()
        if data[0] == 0x80:
            break
        note += "x"
    assert load_network(path).meta["note"] == note
    path.write_bytes(data[:50])  # cut inside its header
    with pytest.raises(CheckpointError, match=r"is a safetensors file cut short: its header alone is \d+ bytes, the "
                                              r"whole file 50\."):
        load_network(path)
    path.write_bytes(data[:len(data) // 2])  # cut among its tensors
    with pytest.raises(CheckpointError, match=r"is not a readable safetensors file .*\. A truncated download"):
        load_network(path)


@pytest.mark.parametrize("words", [
    "Error while serializing: I/O error: No space left on device (os error 28)",  # safetensors 0.8
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',  # 0.4
])
def test_a_full_disk_is_an_oserror_naming_the_file(nets, tmp_path, monkeypatch, words):
    """safetensors said it as a SafetensorError of its own, naming no file, where other writes say "cannot write
    PATH: ..."; the old file stays and no temporary file is left."""
    path = save_network(tmp_path / "net.safetensors", nets)
    old = path.read_bytes()

    def fill_the_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise SafetensorError(words)

    monkeypatch.setattr(native, "save_file", fill_the_disk)
    with pytest.raises(OSError) as info:
        save_network(path, nets)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (f"cannot write {path}: the disk is full (No space left on device); free some space or "
                               "write it elsewhere")
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["net.safetensors"]


def test_the_installed_safetensors_says_which_os_error(tmp_path):
    """What the words above assume, checked against the installed safetensors: its error for a missing folder."""
    with pytest.raises(SafetensorError) as info:
        save_file({"x": torch.zeros(1)}, str(tmp_path / "missing" / "x.safetensors"))
    assert native._os_error(info.value).errno == errno.ENOENT


def test_saving_over_a_link_writes_the_file_it_links_to(nets, tmp_path):
    """`current.safetensors -> v1.safetensors`: the link became a file of its own, and v1 kept the old networks."""
    v1 = save_network(tmp_path / "v1.safetensors", Networks(G_ema=nets.G_ema))
    (tmp_path / "current.safetensors").symlink_to("v1.safetensors")
    assert save_network(tmp_path / "current.safetensors", nets) == tmp_path / "current.safetensors"
    assert (tmp_path / "current.safetensors").is_symlink()
    assert_same_networks(load_network(v1), nets)
    assert sorted(os.listdir(tmp_path)) == ["current.safetensors", "v1.safetensors"]


def test_a_lone_generator_saved_records_the_file_it_was_loaded_from(tmp_path, capsys):
    """`save_network(path, G)` of a generator loaded from a file recorded an empty origin, and `toonlib info` of the
    saved file said nothing of where it came from, as it does for the whole file saved (thirty-eighth session's
    audit). A generator changed since records none: its weights are no longer the file's."""
    from toonlib import load_generator

    source = FIXTURES / "ada_tiny.pkl"
    G = load_generator(source, which="G")
    path = save_network(tmp_path / "g.safetensors", G)
    assert native.read_meta(path)["origin"] == {"format": "nvidia", "source": f"{source} (G)"}
    assert main(["info", str(path)]) == 0
    assert f"converted from {source} (G) (nvidia format)" in capsys.readouterr().out.splitlines()
    again = load_generator(path)  # a toonlib file's lone generator keeps the origin it records, as the whole file does
    assert native.read_meta(save_network(tmp_path / "again.safetensors", again))["origin"]["source"] == f"{source} (G)"
    with torch.no_grad():
        G.mapping.w_avg.add_(1)
    assert native.read_meta(save_network(tmp_path / "changed.safetensors", G))["origin"] == {"format": None,
                                                                                            "source": ""}


def test_foreign_safetensors_and_pickles_are_said_in_plain_words(tmp_path):
    """A safetensors file without metadata was "its metadata has no format 'toonlib': []", an empty list printed, and
    a pickled OrderedDict "it holds a OrderedDict" (thirty-eighth session's audit)."""
    import collections
    import pickle

    save_file({"weight": torch.zeros(3)}, tmp_path / "bare.safetensors")
    save_file({"weight": torch.zeros(3)}, tmp_path / "pt.safetensors", metadata={"format": "pt"})
    save_file({"weight": torch.zeros(3)}, tmp_path / "notes.safetensors", metadata={"b": "1", "a": "2"})
    for name, said in (("bare", "it has no metadata"), ("pt", "its metadata names format 'pt'"),
                       ("notes", "its metadata (a, b) names no format")):
        with pytest.raises(CheckpointError) as info:
            load_network(tmp_path / f"{name}.safetensors")
        assert str(info.value).startswith(f"{tmp_path / name}.safetensors is a safetensors file but not a toonlib "
                                          f"network ({said}, where toonlib's own name format 'toonlib'). ")
    (tmp_path / "od.pkl").write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(CheckpointError, match=r"not a StyleGAN network pickle \(it holds an OrderedDict\)$"):
        load_network(tmp_path / "od.pkl")


def test_malformed_meta_in_a_toonlib_file_is_said_naming_the_file(tmp_path, capsys):
    """A toonlib file whose meta is JSON but no object, or a version-1 dict without G_ema or with a string meta, stopped
    with a traceback; meta that was no JSON was called an invalid config; a kimg that is no number stopped `toonlib
    info` with "could not convert string to float" (thirty-ninth session's audit)."""
    from safetensors import safe_open
    from tiny import tiny_generator

    good = save_network(tmp_path / "good.safetensors", tiny_generator(0))
    with safe_open(good, "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for name, meta, said in [("not_an_object", '"x"', ": str data where toonlib writes names and values (the file was "
                                                      "changed by another tool); convert the model again"),
                             ("a_list", "[1]", ": list data where toonlib writes names and values"),
                             ("no_json", "{bad json", " (JSONDecodeError: ")]:
        save_file(tensors, tmp_path / f"{name}.safetensors", metadata={**metadata, "meta": meta})
        with pytest.raises(CheckpointError) as error:
            load_network(tmp_path / f"{name}.safetensors")
        assert str(error.value).startswith(f"{tmp_path / name}.safetensors: invalid toonlib checkpoint meta{said}")
    save_file(tensors, tmp_path / "null.safetensors", metadata={**metadata, "meta": "null"})  # none, as v1 files read
    assert load_network(tmp_path / "null.safetensors").meta["format"] == "toonlib"
    G = {k.removeprefix("G_ema."): v for k, v in tensors.items()}
    v1 = {"format": "toonlib", "version": 1, "config": json.loads(metadata["config"]), "G_ema": G, "meta": {}}
    torch.save({k: v for k, v in v1.items() if k != "G_ema"}, tmp_path / "no_g_ema.pt")
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'no_g_ema.pt'}: toonlib file without G_ema weights$"):
        load_network(tmp_path / "no_g_ema.pt")
    torch.save({**v1, "meta": "x"}, tmp_path / "v1_meta.pt")
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'v1_meta.pt'}: invalid toonlib checkpoint meta: str"):
        load_network(tmp_path / "v1_meta.pt")
    save_file(tensors, tmp_path / "kimg.safetensors",
              metadata={**metadata, "meta": json.dumps({"finetune": {"base": "b.pkl", "data": "d", "kimg": "abc"}})})
    capsys.readouterr()
    assert main(["info", str(tmp_path / "kimg.safetensors")]) == 0
    assert "fine-tuned from b.pkl on d, abc kimg" in capsys.readouterr().out.splitlines()


def test_the_same_networks_make_the_same_bytes(nets, tmp_path):
    """safetensors wrote the metadata keys in a hash map's order, which changes from one save to the next: the same
    blend made a file of other bytes each time (forty-second session's audit). They are sorted, and the file reads."""
    paths = [save_network(tmp_path / f"{i}.safetensors", nets) for i in range(6)]
    data = paths[0].read_bytes()
    assert all(path.read_bytes() == data for path in paths[1:])
    length = int.from_bytes(data[:8], "little")
    keys = list(json.loads(data[8:8 + length])["__metadata__"])
    assert keys == sorted(keys) == ["config", "format", "meta", "version"]
    assert_same_networks(load_network(paths[0]), nets)


def test_a_network_is_not_written_over_a_photo(tmp_path):
    """`save_network("me.jpg", G)` replaced the photo with safetensors data, then warned of the suffix; `toonlib
    convert` and `blend` refuse such an output before they write (forty-third session's audit)."""
    from PIL import Image
    from tiny import tiny_generator

    import toonlib

    photo = tmp_path / "me.jpg"
    Image.new("RGB", (16, 16), "red").save(photo)
    before = photo.read_bytes()
    with pytest.raises(ValueError, match=r"^save_network writes toonlib's format, a safetensors file, and '.*me\.jpg' "
                                         r"is a JPEG image: nothing was written; name it 'me\.safetensors'$"):
        toonlib.save_network(photo, tiny_generator(0))
    with pytest.raises(ValueError, match=r"and '.*toon\.png' names an image \(\.png\): nothing was written; name it "
                                         r"'toon\.safetensors'$"):
        toonlib.save_network(tmp_path / "toon.png", tiny_generator(0))
    assert photo.read_bytes() == before and not (tmp_path / "toon.png").exists()
