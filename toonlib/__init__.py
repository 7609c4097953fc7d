"""toonlib: toonify yourself with StyleGAN2 network blending, in plain PyTorch.

Public API (imported lazily, so `import toonlib` is fast and loads no heavy dependency):

    result = toonlib.toonify("me.jpg")                          # photo -> toon (models downloaded once)
    G = toonlib.load_network("stylegan2-ffhq.pkl").G_ema       # any published StyleGAN2 checkpoint
    toonlib.save_network("ffhq.safetensors", G)                 # toonlib's own format (safetensors)

Building its first network, toonlib tunes glibc's malloc for this process (freed large blocks stay for reuse: a
1024 px pass no longer page-faults its activations anew; the process may keep up to 2 GiB freed). Set
TOONLIB_MALLOC=default before it runs to keep glibc's behaviour (`toonlib.runtime`).
"""
__version__ = "0.1.0"

_EXPORTS = {
    "Generator": "toonlib.networks",
    "Discriminator": "toonlib.networks",
    "GeneratorConfig": "toonlib.networks",
    "DiscriminatorConfig": "toonlib.networks",
    "load_network": "toonlib.checkpoints",
    "save_network": "toonlib.checkpoints",
    "Networks": "toonlib.checkpoints",
    "CheckpointError": "toonlib.checkpoints",
    "load_generator": "toonlib.checkpoints",
    "load_encoder": "toonlib.encoders",
    "blend": "toonlib.blending",
    "fetch": "toonlib.download",
    "align_face": "toonlib.align",
    "project": "toonlib.projection",
    "save_latent": "toonlib.projection",
    "load_latent": "toonlib.projection",
    "toonify": "toonlib.pipeline",
    "Toonifier": "toonlib.pipeline",
    "paste_faces": "toonlib.pipeline",
    "finetune": "toonlib.train",
    "TrainConfig": "toonlib.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    import importlib
    import importlib.util

    module = _EXPORTS.get(name)
    if module is None:
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")  # a submodule on first use: toonlib.identity
        raise AttributeError(f"module 'toonlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API (`__all__`), `__version__` and the submodules, none of this file's own imports or helpers."""
    import pkgutil

    submodules = {info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")}
    return sorted({*__all__, "__version__", *submodules})
