"""Registry of every downloadable file toonlib knows: where to get it, what it is, where it is kept.

One entry per file: StyleGAN2 bases and toon models, pSp / e4e encoders, and the auxiliary weights
other libraries need (torchvision's VGG16 for LPIPS, face-alignment's detector and landmark networks,
the Inception network of FID / KID). `toonlib.fetch(name)` downloads any of them with the same
cache, resume, validation, progress bar and errors; `toonlib models` lists them.

Each entry lists its sources in the order `download.fetch` tries them: direct URLs first, then
Google Drive file ids written as `gdrive:<id>`. `provenance` says where each source was checked
(the authors' README or download code). Checksums and sizes are given only where published.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Optional

__all__ = ["HOMES", "KINDS", "MODELS", "TOON_ROLES", "ModelInfo", "UnknownModelError", "get_model",
           "registry_name_of_file"]

KINDS = ("stylegan2", "encoder", "lpips-vgg", "face-alignment", "fid")
#: What each kind of file is, in words (for messages about a file given where another kind is wanted).
KIND_NAMES = {"stylegan2": "a StyleGAN2 generator", "encoder": "a pSp / e4e encoder",
              "lpips-vgg": "the VGG16 weights of the LPIPS loss", "face-alignment": "weights of the face landmarker",
              "fid": "the Inception weights of FID / KID"}
#: The same, in the plural (`get_model`'s list of the names of a kind).
KIND_PLURALS = {"stylegan2": "StyleGAN2 generators", "encoder": "pSp / e4e encoders",
                "lpips-vgg": "LPIPS weights", "face-alignment": "face landmarker weights", "fid": "FID / KID weights"}
HOMES = ("cache", "torch-hub")
TOON_ROLES = ("blended", "unblended")

_NVIDIA_LICENSE = "Nvidia Source Code License-NC"
_FFHQ_DERIVED = f"weights fine-tuned from NVIDIA's FFHQ model: {_NVIDIA_LICENSE}"
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files"
_FAN = "https://www.adrianbulat.com/downloads/python-fan"


@dataclass(frozen=True)
class ModelInfo:
    """One downloadable file and what toonlib knows about it."""

    name: str
    """Registry name, what users type: `toonlib fetch NAME`, `load_network(NAME)`."""
    description: str
    """One line for `toonlib models`."""
    sources: tuple[str, ...]
    """Direct URLs first, then Google Drive ids as `gdrive:<id>`; tried in this order."""
    filename: str
    """Name of the file in its folder (`home`); for torch-hub files the name the owning library looks for."""
    format: str
    """File format. stylegan2: 'tensorflow' | 'nvidia' | 'rosinality'; encoder: 'psp' | 'e4e';
    other kinds: 'torch' (a state dict that `torch.load(weights_only=True)` reads)."""
    resolution: Optional[int]
    """Output resolution of a generator (or of an encoder's decoder); None for auxiliary weights."""
    license: str
    """Licence of the weights (and of the code they come with where that differs)."""
    origin: str
    """Project page of the authors."""
    sha256: Optional[str] = None
    """Hex sha256 of the file, or the prefix its publisher put in the file name (torch hub's `name-<prefix>.ext`
    convention, at least 8 digits) when only that is published; checked after every download."""
    size: Optional[int] = None
    """Size in bytes, where published."""
    kind: str = "stylegan2"
    """What the file is (one of `KINDS`); decides how a download is validated."""
    home: str = "cache"
    """Where the file is kept (one of `HOMES`): 'cache' = toonlib's cache folder (`toonlib models` prints it);
    'torch-hub' = `torch.hub.get_dir()/checkpoints` ($TORCH_HOME/hub/checkpoints), where torchvision,
    face-alignment and torch-fidelity look, so that they find it and never download it again."""
    lineage: Optional[str] = None
    """Registry name of the network this one was fine-tuned from (for an encoder: of the generator it encodes
    into, its decoder); None for networks trained from scratch and for auxiliary weights."""
    converted_from: Optional[str] = None
    """Registry name of the file this one is a format conversion of (the same weights in another format)."""
    toon: Optional[str] = None
    """None: not a toon model. 'unblended': a toon generator fine-tuned from `lineage`, which toonlib blends
    with its base at any swap resolution (the swap-resolution slider). 'blended': a published blend of a toon
    model and its base, fixed at the swap resolution its authors chose (unless `reblend_network` is set)."""
    reblend_network: Optional[str] = None
    """For a 'blended' file that also holds the un-blended toon generator: which network of the file ('G' or
    'G_ema') holds it, so the file still offers the swap-resolution slider."""
    provenance: str = ""
    """Where the sources and facts of this entry were checked: the authors' README or download code."""

    @property
    def offers_swap_slider(self) -> bool:
        """True when the file holds an un-blended toon generator that can be re-blended at any resolution."""
        return self.toon == "unblended" or (self.toon == "blended" and self.reblend_network is not None)


class UnknownModelError(KeyError, ValueError):
    """A model name that is not in the registry (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _noaug(resolution: int, filename: str) -> ModelInfo:
    return ModelInfo(
        name=f"ffhq-{resolution}-noaug",
        description=f"FFHQ {resolution}x{resolution} StyleGAN2 without augmentation: "
                    "stylegan2-ada-pytorch's transfer-learning source network",
        sources=(f"{_ADA}/transfer-learning-source-nets/{filename}",),
        filename=filename,
        format="nvidia",
        resolution=resolution,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2-ada-pytorch",
        provenance="NVlabs/stylegan2-ada-pytorch README, data repository table (transfer-learning-source-nets)",
    )


def _jojogan(style: str, file_id: str, what: str) -> ModelInfo:
    return ModelInfo(
        name=f"jojogan-{style.replace('_', '-')}",
        description=f"JoJoGAN one-shot style '{style}' ({what}): FFHQ fine-tuned on one or a few style images",
        sources=(f"gdrive:{file_id}",),
        filename=f"jojogan-{style}.pt",
        format="rosinality",
        resolution=1024,
        license=f"MIT (JoJoGAN code); {_FFHQ_DERIVED}",
        origin="https://github.com/mchong6/JoJoGAN",
        lineage="ffhq-1024-rosinality",
        toon="unblended",
        provenance=f"mchong6/JoJoGAN stylize.ipynb `drive_ids['{style}.pt']`; the generator is saved under the key "
                   "'g' (JoJoGAN predict.py loads ckpt['g']) and was fine-tuned from the rosinality FFHQ file that "
                   "notebook downloads as stylegan2-ffhq-config-f.pt (Drive id 1Yr7KuD959btpmcKGAUsbAk5rPjX2MytK, "
                   "not checked to be byte-identical to ffhq-1024-rosinality)",
    )


def _nada(style: str, file_id: str) -> ModelInfo:
    return ModelInfo(
        name=f"nada-{style.replace('_', '-')}",
        description=f"StyleGAN-NADA '{style.replace('_', ' ')}' generator: FFHQ adapted by a CLIP text prompt",
        sources=(f"gdrive:{file_id}",),
        filename=f"nada-{style}.pt",
        format="rosinality",
        resolution=1024,
        license=f"MIT (StyleGAN-NADA code); {_FFHQ_DERIVED}",
        origin="https://github.com/rinongal/StyleGAN-nada",
        lineage="ffhq-1024-rosinality",
        toon="unblended",
        provenance=f"yuval-alaluf/hyperstyle README ('{style.replace('_', ' ')} generator from StyleGAN-NADA') and "
                   "notebooks FINETUNED_MODELS; StyleGAN-NADA's own README links only a Drive folder, and trains "
                   "from the rosinality FFHQ file (Drive id 1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT)",
    )


def _yang(style: str, file_id: str) -> ModelInfo:
    return ModelInfo(
        name=f"yang-{style}",
        description=f"StyleGAN2 fine-tuned on Shuai Yang's {style.capitalize()} faces (the toonify model of "
                    "DualStyleGAN / VToonify / StyleGANEX), un-blended",
        sources=(f"gdrive:{file_id}",),
        filename=f"yang-toonify-{style}.pt",
        format="rosinality",
        resolution=1024,
        license=f"S-Lab License 1.0 (non-commercial); {_FFHQ_DERIVED}",
        origin="https://github.com/williamyang1991/DualStyleGAN",
        lineage="ffhq-1024-rosinality",
        toon="unblended",
        provenance="williamyang1991/StyleGANEX README, 'Downloading supporting models': toonify_model "
                   f"({style}); StyleGANEX models/psp.py loads it as ckpt['g_ema']. DualStyleGAN's "
                   "finetune_stylegan.py saves only g_ema, starting from ./checkpoint/stylegan2-ffhq-config-f.pt "
                   "(the rosinality FFHQ file). That this Drive file is DualStyleGAN's finetune-000600.pt is "
                   "not stated by the authors",
    )


_ENTRIES = (
    # --- bases ------------------------------------------------------------------------------------
    ModelInfo(
        name="ffhq-1024-tf",
        description="FFHQ 1024x1024 StyleGAN2 config-f, the original TensorFlow pickle",
        sources=("https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl",),
        filename="stylegan2-ffhq-config-f.pkl",
        format="tensorflow",
        resolution=1024,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2",
        provenance="NVlabs/stylegan2 README, pre-trained networks",
    ),
    ModelInfo(
        name="ffhq-1024",
        description="FFHQ 1024x1024 StyleGAN2, PyTorch pickle (stylegan2-ada-pytorch, mirrored on NGC)",
        sources=(f"{_ADA}/ffhq.pkl", f"{_NGC}/stylegan2-ffhq-1024x1024.pkl"),
        filename="ffhq.pkl",
        format="nvidia",
        resolution=1024,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2-ada-pytorch",
        provenance="NVlabs/stylegan2-ada-pytorch README ('ffhq.pkl: FFHQ at 1024x1024, trained using original "
                   "StyleGAN2'); NGC mirror from NVIDIA's NGC catalogue",
    ),
    _noaug(256, "ffhq-res256-mirror-paper256-noaug.pkl"),
    _noaug(512, "ffhq-res512-mirror-stylegan2-noaug.pkl"),
    _noaug(1024, "ffhq-res1024-mirror-stylegan2-noaug.pkl"),
    ModelInfo(
        name="ffhq-1024-rosinality",
        description="FFHQ 1024x1024 config-f converted to rosinality's format: the base of pSp, e4e, "
                    "StyleGAN-NADA, JoJoGAN and DualStyleGAN",
        sources=("gdrive:1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",),
        filename="stylegan2-ffhq-config-f.pt",
        format="rosinality",
        resolution=1024,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/rosinality/stylegan2-pytorch",
        converted_from="ffhq-1024-tf",
        provenance="eladrich/pixel2style2pixel and omertov/encoder4editing READMEs, auxiliary models: 'FFHQ "
                   "StyleGAN ... taken from rosinality'; pSp configs/paths_config.py names it "
                   "stylegan2-ffhq-config-f.pt",
    ),
    ModelInfo(
        name="metfaces-1024",
        description="MetFaces 1024x1024 (faces in art): FFHQ fine-tuned with ADA, un-blended",
        sources=(f"{_ADA}/metfaces.pkl",),
        filename="metfaces.pkl",
        format="nvidia",
        resolution=1024,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2-ada-pytorch",
        lineage="ffhq-1024",
        toon="unblended",
        provenance="NVlabs/stylegan2-ada-pytorch README ('metfaces.pkl: MetFaces at 1024x1024, transfer learning "
                   "from FFHQ using ADA'); which FFHQ pickle it started from is not stated",
    ),
    # --- Toonify (blended) ----------------------------------------------------------------------------
    ModelInfo(
        name="toonify-blended-tf",
        description="The original Toonify model: the cartoon-fine-tuned G and D and the blended Gs "
                    "(TensorFlow pickle)",
        sources=("gdrive:1H73TfV5gQ9ot7slSed_l-lim9X7pMRiU",),
        filename="ffhq-cartoon-blended-64.pkl",
        format="tensorflow",
        resolution=1024,
        license=f"{_NVIDIA_LICENSE} (fine-tuned from NVIDIA's FFHQ model)",
        origin="https://github.com/justinpinkney/toonify",
        lineage="ffhq-1024-tf",
        toon="blended",
        reblend_network="G",
        provenance="Drive id from Justin Pinkney's 'Toonify yourself' Colab code ('use my copy of the blended model "
                   "to save Doron's download bandwidth'), quoted in many repositories but not found in "
                   "justinpinkney/toonify itself; his blend_models.py saves (low_res_G, low_res_D, blended Gs), so G "
                   "is the fine-tuned toon generator (the training G, not its EMA)",
    ),
    ModelInfo(
        name="toonify-blended-rosinality",
        description="The blended Toonify generator in rosinality/stylegan2-pytorch format (.pt)",
        sources=("gdrive:1r3XVCt_WYUKFZFxhNH-xO2dTtF6B5szu",),
        filename="ffhq_cartoon_blended.pt",
        format="rosinality",
        resolution=1024,
        license=f"{_NVIDIA_LICENSE} (fine-tuned from NVIDIA's FFHQ model)",
        origin="https://github.com/justinpinkney/toonify",
        lineage="ffhq-1024-rosinality",
        toon="blended",
        provenance="eladrich/pixel2style2pixel README, toonify section ('the converted generator Pytorch model may "
                   "be downloaded here') and yuval-alaluf/hyperstyle README ('Toonify generator from Doron Adler and "
                   "Justin Pinkney converted to Pytorch using rosinality's conversion script'); that it converts "
                   "exactly the Gs of toonify-blended-tf is not stated",
    ),
    # --- un-blended toon models -----------------------------------------------------------------------
    _yang("cartoon", "1w7BJDiSw5_ybelv7jL_Jeu1T-oWEWUmH"),
    _yang("pixar", "1phftRYbsp34pL5Yqapz3c_Wv0G4L0vy2"),
    _yang("arcane", "1HysdpShIAbHtf6T9R-hVULjUShgA5AL1"),
    _jojogan("arcane_caitlyn", "1gOsDTiTPcENiFOrhmkkxJcTURykW1dRc", "Arcane, Caitlyn"),
    _jojogan("arcane_jinx", "1quQ8vPjYpUiXM4k1_KIwP4EccOefPpG_", "Arcane, Jinx"),
    _jojogan("arcane_multi", "15V9s09sgaw-zhKp116VHigf5FowAy43f", "Arcane, several faces"),
    _jojogan("disney", "1zbE2upakFUAx8ximYnLofFwfT8MilqJA", "Disney"),
    _jojogan("jojo", "13cR2xjIBj8Ga5jMO7gtxzIJj2PDsBYK4", "JoJo's Bizarre Adventure"),
    _jojogan("jojo_yasuho", "1grZT3Gz1DLzFoJchAmoj3LoM9ew9ROX_", "JoJo, Yasuho"),
    _jojogan("sketch_multi", "1GdaeHGBGjBAFsWipTL0y-ssUiAqk8AxD", "pencil sketches"),
    _jojogan("art", "1a0QDEHwXQ6hE_FcYEyNMuv5r5UnRQLKT", "painted portraits"),
    _nada("pixar", "1trPW-To9L63x5gaXrbAIPkOU0q9f_h05"),
    _nada("sketch", "1aHhzmxT7eD90txAN93zCl8o9CUVbMFnD"),
    _nada("disney_princess", "1rXHZu4Vd0l_KCiCxGbwL9Xtka7n3S2NB"),
    # --- encoders (pSp / e4e checkpoints: encoder + rosinality decoder) ---------------------------------
    ModelInfo(
        name="e4e-ffhq",
        description="e4e encoder for FFHQ: photo -> W+ of the FFHQ base in one pass (JoJoGAN's inversion)",
        sources=("gdrive:1cUv_reLE6k3604or78EranS7XzuVMWeO",),
        filename="e4e_ffhq_encode.pt",
        format="e4e",
        resolution=1024,
        license=f"MIT (e4e code); decoder: {_NVIDIA_LICENSE}",
        origin="https://github.com/omertov/encoder4editing",
        kind="encoder",
        lineage="ffhq-1024-rosinality",
        provenance="omertov/encoder4editing README, pretrained models: 'FFHQ Inversion'; file name from its "
                   "inference notebook (MODEL_PATHS)",
    ),
    ModelInfo(
        name="psp-ffhq",
        description="pSp encoder for FFHQ inversion: photo -> W+ of the FFHQ base in one pass",
        sources=("gdrive:1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0",),
        filename="psp_ffhq_encode.pt",
        format="psp",
        resolution=1024,
        license=f"MIT (pSp code); decoder: {_NVIDIA_LICENSE}",
        origin="https://github.com/eladrich/pixel2style2pixel",
        kind="encoder",
        lineage="ffhq-1024-rosinality",
        provenance="eladrich/pixel2style2pixel README, pretrained models: 'StyleGAN Inversion'; file name from "
                   "its inference notebook (MODEL_PATHS['ffhq_encode'])",
    ),
    ModelInfo(
        name="psp-toonify",
        description="pSp Toonify encoder: photo -> W+ of the blended Toonify generator, its decoder",
        sources=("gdrive:1YKoiVuFaqdvzDP5CZaqa3k5phL-VDmyz",),
        filename="psp_ffhq_toonify.pt",
        format="psp",
        resolution=1024,
        license=f"MIT (pSp code); decoder: {_NVIDIA_LICENSE} (Toonify, fine-tuned from FFHQ)",
        origin="https://github.com/eladrich/pixel2style2pixel",
        kind="encoder",
        lineage="toonify-blended-rosinality",
        toon="blended",
        provenance="eladrich/pixel2style2pixel README, pretrained models: 'Toonify ... using StyleGAN generator "
                   "from Doron Adler and Justin Pinkney'; file name from its inference notebook "
                   "(MODEL_PATHS['toonify']); the README's toonify training section names the decoder: the "
                   "rosinality conversion of Toonify, Drive id 1r3XVCt_WYUKFZFxhNH-xO2dTtF6B5szu",
    ),
    # --- auxiliary weights of other libraries -------------------------------------------------------------
    ModelInfo(
        name="lpips-vgg16",
        description="torchvision's ImageNet VGG16, the trunk of the LPIPS loss used by projection (553 MB)",
        sources=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        filename="vgg16-397923af.pth",
        format="torch",
        resolution=None,
        license="BSD-3-Clause (torchvision)",
        origin="https://github.com/pytorch/vision",
        sha256="397923af",
        kind="lpips-vgg",
        home="torch-hub",
        provenance="torchvision models/vgg.py VGG16_Weights.IMAGENET1K_V1 (lpips builds vgg16(pretrained=True)); "
                   "torchvision checks this sha256 prefix (check_hash=True)",
    ),
    ModelInfo(
        name="face-alignment-sfd",
        description="face-alignment's S3FD face detector",
        sources=(f"{_FAN}/s3fd-619a316812.pth",),
        filename="s3fd-619a316812.pth",
        format="torch",
        resolution=None,
        license="BSD-3-Clause (face-alignment)",
        origin="https://github.com/1adrianb/face-alignment",
        kind="face-alignment",
        home="torch-hub",
        provenance="face_alignment/detection/sfd/sfd_detector.py models_urls['s3fd'], read with "
                   "torch.hub.load_state_dict_from_url (torch hub's checkpoints folder)",
    ),
    ModelInfo(
        name="face-alignment-2dfan4",
        description="face-alignment's 2D-FAN-4 network: 68 face landmarks",
        sources=(f"{_FAN}/2DFAN4-11f355bf06.pth.tar",),
        filename="2DFAN4-11f355bf06.pth.tar",
        format="torch",
        resolution=None,
        license="BSD-3-Clause (face-alignment)",
        origin="https://github.com/1adrianb/face-alignment",
        kind="face-alignment",
        home="torch-hub",
        provenance="face_alignment/api.py models_urls['2DFAN-4'], read with face_alignment.utils.load_file_from_url "
                   "(torch hub's checkpoints folder, file named after the URL)",
    ),
    ModelInfo(
        name="inception-fid",
        description="Inception-v3 of the FID / KID metrics (TensorFlow's 2015-12-05 weights, as torch-fidelity "
                    "converted them)",
        sources=("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth",),
        filename="weights-inception-2015-12-05-6726825d.pth",
        format="torch",
        resolution=None,
        license="Apache-2.0 (TensorFlow models' weights, converted by torch-fidelity)",
        origin="https://github.com/toshas/torch-fidelity",
        kind="fid",
        home="torch-hub",
        provenance="torch_fidelity/feature_extractor_inceptionv3.py URL_INCEPTION_V3 (torch-fidelity 0.4.0), read "
                   "with torch.hub.load_state_dict_from_url, or from feature_extractor_weights_path",
    ),
)

MODELS: dict[str, ModelInfo] = {info.name: info for info in _ENTRIES}


def get_model(name: str, kinds: tuple[str, ...] | None = None, listed: tuple[str, ...] | None = None) -> ModelInfo:
    """The registry entry called `name`; an unknown name raises `UnknownModelError` with suggestions, among the
    models of `kinds` (default: all) where the name was given for a file of those kinds, and the names of the models
    of `listed` (default: `kinds`): a generator's option lists the generators, and suggests an encoder too, whose
    file holds one (its decoder)."""
    try:
        return MODELS[name]
    except KeyError:
        pass
    listed = kinds if listed is None else listed
    names = sorted(known for known, info in MODELS.items() if listed is None or info.kind in listed)
    # 'FFHQ-1024-TF', 'ffhq_1024_tf': 'ffhq-1024-tf'
    by_key = {_match_key(known): known for known in sorted(MODELS) if kinds is None or MODELS[known].kind in kinds}
    key = _match_key(str(name))
    starting = [known for known_key, known in by_key.items() if known_key.startswith(key + "-")]
    close = difflib.get_close_matches(key, by_key, n=1)
    filed = registry_name_of_file(name) if isinstance(name, (str, os.PathLike)) else None  # None, 1024: no file
    if filed is not None and (kinds is None or MODELS[filed].kind in kinds):  # pSp's `ffhq_cartoon_blended.pt` was
        hint = f" {os.path.basename(str(name))!r} is the file of {filed!r}: give that name."  # "toonify-blended-tf?"
    elif key not in by_key and starting and len(key) >= 3:  # `ffhq`: the FFHQ models, not psp-ffhq; `e4e`: e4e-ffhq
        hint = f" Did you mean {'one of ' + ', '.join(starting) if len(starting) > 1 else repr(starting[0])}?"
    else:
        hint = f" Did you mean {by_key[close[0]]!r}?" if close else ""
    known = "Known models" if listed is None else f"Known {' and '.join(KIND_PLURALS[kind] for kind in listed)}"
    raise UnknownModelError(f"unknown model {name!r}.{hint} {known}: {', '.join(names)}") from None


def registry_name_of_file(path: str | os.PathLike) -> str | None:
    """The registry name of the model whose file is called as `path` is (`ffhq_cartoon_blended.pt`:
    'toonify-blended-rosinality'), or None; the authors' READMEs name their files, not toonlib's names."""
    filename = os.path.basename(os.fspath(path)).lower()
    return next((known for known, info in MODELS.items() if info.filename.lower() == filename), None)


def same_registry_weights(a: object, b: object) -> bool:
    """Whether `a` and `b` are registry names of the same weights: one name, or format conversions of one file
    (`converted_from`: ffhq-1024-rosinality is ffhq-1024-tf). False for anything else (files, models)."""
    def original(name: str) -> str:
        while (info := MODELS.get(name)) is not None and info.converted_from is not None:
            name = info.converted_from
        return name
    return isinstance(a, str) and isinstance(b, str) and a in MODELS and b in MODELS and original(a) == original(b)


def _match_key(name: str) -> str:
    """How `get_model` compares a name with the registry's for its suggestion: case and `_` / `-` aside."""
    return name.lower().replace("_", "-")
