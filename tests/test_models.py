"""The registry is consistent, its auxiliary entries match what the installed libraries download, and
`toonlib models` lists every entry with its kind and whether it is here."""
from __future__ import annotations

import ast
import importlib.util
import re
import urllib.parse
from pathlib import Path

import pytest

from toonlib import models
from toonlib.cli import main
from toonlib.models import HOMES, KINDS, MODELS, TOON_ROLES

FORMATS = {"stylegan2": {"tensorflow", "nvidia", "rosinality"}, "encoder": {"psp", "e4e"},
           "lpips-vgg": {"torch"}, "face-alignment": {"torch"}, "fid": {"torch"}}


def test_names_and_filenames_are_unique():
    names = [info.name for info in models._ENTRIES]
    assert len(names) == len(set(names)) == len(MODELS)  # MODELS would silently drop a duplicate
    filenames = [info.filename for info in MODELS.values()]
    assert len(filenames) == len(set(filenames))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_entry_is_consistent(name):
    info = MODELS[name]
    assert info.name == name and info.description and info.license and info.origin.startswith("https://")
    assert info.provenance, "every entry says where its sources were checked"
    assert info.kind in KINDS and info.home in HOMES and info.format in FORMATS[info.kind]
    assert info.sources and all(s.startswith(("https://", "gdrive:")) for s in info.sources)
    kinds = ["gdrive" if s.startswith("gdrive:") else "url" for s in info.sources]
    assert kinds == sorted(kinds, key=lambda k: k == "gdrive")  # direct URLs first
    assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{8,64}", info.sha256)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", info.filename)
    generator = info.kind in ("stylegan2", "encoder")
    assert (info.resolution in (256, 512, 1024)) if generator else info.resolution is None
    assert info.home == ("cache" if generator else "torch-hub")
    for other in (info.lineage, info.converted_from):
        assert other is None or (other in MODELS and other != name), other
    assert info.toon is None or info.toon in TOON_ROLES
    if info.toon is not None:
        assert info.lineage is not None, "a toon model names the base it was fine-tuned from"
    assert info.reblend_network in (None, "G", "G_ema")
    assert info.reblend_network is None or info.toon == "blended"


@pytest.mark.parametrize("typed", ["FFHQ-1024-TF", "ffhq_1024_tf", "Toonify-Blended-TF"])
def test_a_misspelt_name_gets_its_close_match_whatever_its_case(typed):
    """'FFHQ-1024-TF' got no suggestion: the close match ignored names that differ only in case or '_' / '-'."""
    expected = typed.lower().replace("_", "-")
    with pytest.raises(models.UnknownModelError, match=f"unknown model '{typed}'. Did you mean '{expected}'?"):
        models.get_model(typed)


def test_a_name_that_begins_registry_names_gets_them_all():
    """`toonlib fetch ffhq` was asked "Did you mean 'psp-ffhq'?" (the closest spelling), not the FFHQ models."""
    with pytest.raises(models.UnknownModelError, match=r"unknown model 'ffhq'\. Did you mean one of ffhq-1024, "
                                                       r"ffhq-1024-noaug, .*, ffhq-512-noaug\? Known models"):
        models.get_model("ffhq")
    with pytest.raises(models.UnknownModelError, match=r"unknown model 'FFHQ-1024'\. Did you mean 'ffhq-1024'\?"):
        models.get_model("FFHQ-1024")  # a name of its own: not "one of ffhq-1024-noaug, ..."


def test_a_registry_files_own_name_is_pointed_to_its_model():
    """pSp's README names `ffhq_cartoon_blended.pt`: typed as a model name it got "Did you mean 'toonify-blended-tf'?"
    (another file, of another format), and `stylegan2-ffhq-config-f.pt` or `ffhq.pkl` no suggestion (audit)."""
    from toonlib.checkpoints import load_network

    for typed, meant in (("ffhq_cartoon_blended.pt", "toonify-blended-rosinality"),
                         ("stylegan2-ffhq-config-f.pt", "ffhq-1024-rosinality"), ("FFHQ.pkl", "ffhq-1024")):
        with pytest.raises(models.UnknownModelError, match=f"unknown model '{re.escape(typed)}'. '{re.escape(typed)}' "
                                                           f"is the file of '{meant}': give that name. Known models"):
            models.get_model(typed)
    with pytest.raises(FileNotFoundError) as caught:  # a path of that name that is not here, given for a generator
        load_network("ffhq_cartoon_blended.pt")
    assert str(caught.value).endswith("ffhq_cartoon_blended.pt ('ffhq_cartoon_blended.pt' is the file of the "
                                      "registry's 'toonify-blended-rosinality': give that name to download it)")
    with pytest.raises(models.UnknownModelError) as caught:
        models.get_model("vgg16-397923af.pth", kinds=("stylegan2",))  # not a generator's: not suggested for one
    assert "is the file of" not in str(caught.value)
    for odd in (None, 1024):  # no file name: the unknown model it was (a TypeError from the file name's lookup)
        with pytest.raises(models.UnknownModelError, match=f"unknown model {odd}"):
            models.get_model(odd)


def test_a_checkpoint_name_near_an_encoders_is_asked_about_it():
    """`toonlib info e4e` (info and convert read an encoder's file, as its decoder) listed the generators only, and
    asked about none: the encoders were left out of the suggestions as well as of the list."""
    from toonlib.checkpoints import load_network

    for name, meant in (("e4e", "e4e-ffhq"), ("PSP-FFHQ", "psp-ffhq"), ("ffhq_1024_tf", "ffhq-1024-tf")):
        with pytest.raises(models.UnknownModelError) as caught:
            load_network(name)
        said = str(caught.value)
        assert said.startswith(f"unknown model {name!r}. Did you mean {meant!r}? Known StyleGAN2 generators: "), said
        assert "e4e-ffhq" not in said.split("Known")[1]  # listed: the generators


def test_lineage_ends_at_a_base():
    for info in MODELS.values():
        if info.lineage is None:
            continue
        seen = [info.name]
        while MODELS[seen[-1]].lineage is not None:
            parent = MODELS[seen[-1]].lineage
            assert parent not in seen, f"lineage cycle: {seen + [parent]}"
            seen.append(parent)
        assert MODELS[seen[-1]].kind == "stylegan2" and MODELS[seen[-1]].toon is None, seen


def test_swap_slider_flags():
    assert MODELS["toonify-blended-tf"].offers_swap_slider  # its G is the un-blended toon model
    assert not MODELS["toonify-blended-rosinality"].offers_swap_slider  # the blend only
    assert not MODELS["ffhq-1024-tf"].offers_swap_slider
    unblended = {name for name, info in MODELS.items() if info.toon == "unblended"}
    assert {"yang-cartoon", "yang-pixar", "yang-arcane", "nada-pixar", "nada-sketch", "nada-disney-princess",
            "jojogan-jojo", "metfaces-1024"} <= unblended
    assert all(MODELS[name].offers_swap_slider for name in unblended)


def test_zoo_sources_are_the_published_ids():
    """The Drive ids of issue 11, each checked against its authors' README (see each entry's provenance)."""
    expected = {"e4e-ffhq": "1cUv_reLE6k3604or78EranS7XzuVMWeO", "psp-ffhq": "1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0",
                "psp-toonify": "1YKoiVuFaqdvzDP5CZaqa3k5phL-VDmyz",
                "ffhq-1024-rosinality": "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",
                "yang-cartoon": "1w7BJDiSw5_ybelv7jL_Jeu1T-oWEWUmH", "yang-pixar": "1phftRYbsp34pL5Yqapz3c_Wv0G4L0vy2",
                "yang-arcane": "1HysdpShIAbHtf6T9R-hVULjUShgA5AL1"}
    for name, file_id in expected.items():
        assert MODELS[name].sources == (f"gdrive:{file_id}",), name
    assert MODELS["e4e-ffhq"].kind == MODELS["psp-toonify"].kind == "encoder"
    assert MODELS["psp-toonify"].lineage == "toonify-blended-rosinality"
    assert MODELS["yang-pixar"].lineage == MODELS["nada-pixar"].lineage == "ffhq-1024-rosinality"


def _url_file(url: str) -> str:
    return Path(urllib.parse.urlsplit(url).path).name


def _module_dict(module: str, variable: str) -> dict:
    """A dict literal assigned at the top of an installed module, read from its source without importing it
    (importing face_alignment takes ~15 s: numba)."""
    package, *rest = module.split(".")
    folder = Path(importlib.util.find_spec(package).origin).parent  # find_spec of a submodule imports its parents
    tree = ast.parse(folder.joinpath(*rest[:-1], rest[-1] + ".py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{module} has no {variable}")


def test_auxiliary_entries_match_the_installed_libraries():
    """Same URL and the file name each library computes from it, so the library finds the file and never
    downloads it again."""
    import torchvision

    vgg_url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    fan_url = _module_dict("face_alignment.api", "models_urls")["2DFAN-4"]
    sfd_url = _module_dict("face_alignment.detection.sfd.sfd_detector", "models_urls")["s3fd"]
    for name, url in (("lpips-vgg16", vgg_url), ("face-alignment-sfd", sfd_url),
                      ("face-alignment-2dfan4", fan_url)):
        info = MODELS[name]
        assert info.sources == (url,) and info.filename == _url_file(url) and info.home == "torch-hub", name
    assert re.search(rf"-{MODELS['lpips-vgg16'].sha256}\.", vgg_url)  # torch hub's hash-prefix convention


def test_inception_entry_matches_torch_fidelity():
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    info = MODELS["inception-fid"]
    assert info.sources == (fidelity.URL_INCEPTION_V3,) and info.filename == _url_file(fidelity.URL_INCEPTION_V3)


def test_models_command_lists_every_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / MODELS["e4e-ffhq"].filename).write_bytes(b"x")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / MODELS["lpips-vgg16"].filename).write_bytes(b"x")
    (cache / MODELS["lpips-vgg16"].filename).write_bytes(b"x")  # in the wrong folder: does not count

    assert main(["models", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"toonlib cache: {cache}" and out[1] == f"torch hub folder: {hub}"
    assert main(["models", "--cache-dir", str(tmp_path / "cahce")]) == 0  # misspelt: every model "missing", unsaid
    assert capsys.readouterr().out.splitlines()[0] == (f"toonlib cache: {tmp_path / 'cahce'} (no such folder yet: "
                                                       "nothing downloaded there)")
    assert out[2].split() == ["NAME", "KIND", "RES", "TOON", "BASE", "CACHED", "SIZE", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in out[3:3 + len(MODELS)]}
    assert list(rows) == list(MODELS)
    for name, line in rows.items():
        fields = line.split()
        assert fields[1] == MODELS[name].kind
        cached = "cached" if name in ("e4e-ffhq", "lpips-vgg16") else "-"
        assert cached in fields[2:6], line
        # the lineage the messages send users to ("its lineage in `toonlib models`"): it was shown nowhere
        assert MODELS[name].lineage is None or MODELS[name].lineage in fields[2:5], line
    assert "blended+G" in rows["toonify-blended-tf"] and "unblended" in rows["yang-cartoon"]
    legend = "\n".join(out[3 + len(MODELS):])
    assert "- = not downloaded yet" in legend and "toonlib fetch NAME" in legend


def test_an_unknown_name_lists_and_suggests_the_models_of_the_kinds_wanted():
    with pytest.raises(models.UnknownModelError) as caught:
        models.get_model("e4e", kinds=("encoder",))
    assert str(caught.value) == ("unknown model 'e4e'. Did you mean 'e4e-ffhq'? Known pSp / e4e encoders: e4e-ffhq, "
                                 "psp-ffhq, psp-toonify")  # the one encoder whose name begins so (none was said)
    with pytest.raises(models.UnknownModelError) as caught:
        models.get_model("lpips-vgg", kinds=("stylegan2",))
    assert "Did you mean" not in str(caught.value) and "lpips-vgg16" not in str(caught.value)
    assert "Known StyleGAN2 generators: ffhq-1024, " in str(caught.value)


def test_what_the_readme_says_toonlib_models_lists_is_a_column_of_its_table(tmp_path, monkeypatch, capsys):
    """The README said `fetch` checks "the resolution and format `toonlib models` lists": it lists no format (fortieth
    session's audit). Each thing the README says the table lists is one of its columns."""
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    promised = re.findall(r"the ([a-z, ]+?) `toonlib models` lists", readme)
    assert promised, "the README no longer says what `toonlib models` lists: update this test"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["models", "--cache-dir", str(tmp_path / "cache")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("NAME")).split()
    column = {"resolution": "RES", "lineage": "BASE", "state": "CACHED"}  # the README's word for a column's name
    for phrase in promised:
        for word in re.split(r",\s*(?:and\s+)?|\s+and\s+", phrase):
            assert column.get(word, word.upper()) in header, f"the README says `toonlib models` lists the {word}"
