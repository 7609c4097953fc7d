"""The choices and defaults users set by name, one home each, shared by the Python API, the command line and
the web app. Nothing here imports torch, so the command line's parser builds at once: `toonlib --help` and a
mistyped option answered after 2-3 s, the time it took to import torch through the modules these lived in."""
from __future__ import annotations

#: How a photo becomes a latent (`toonlib.pipeline`'s module docstring).
INVERT_MODES = ("optimize", "e4e", "psp", "e4e+optimize", "psp-toonify")
#: The modes that run the LPIPS projection (and so take `steps`).
OPTIMIZING_MODES = ("optimize", "e4e+optimize")
#: The seeds `torch.Generator.manual_seed` takes (a negative seed is taken modulo 2**64): a projection's seed=, and
#: project's and toonify's --seed.
SEED_RANGE = (-2**63, 2**64 - 1)
#: Where face landmarks come from (`align_face`'s `detector`).
DETECTORS = ("auto", "face_alignment", "dlib")
#: The largest aligned crop (`align_face`'s `output_size`, `toonlib align --size`): 8x FFHQ's 1024 px. A crop that
#: size already takes ~1 GB of memory, and a larger one only enlarges the photo's pixels.
MAX_ALIGN_SIZE = 8192
#: How training images are brought to the model's resolution (`ImageDataset`'s `prepare`).
PREPARE_MODES = ("crop", "align", "none")
#: The fewest usable images a fine-tuning data set may hold (`ImageDataset`'s default `min_images`).
MIN_IMAGES = 8
#: How many seeds a seed list takes (`networks.parse_seeds`): more is a typo (0-1000000000), not a list of images.
MAX_SEEDS = 10_000
#: How many seeds a grid of faces takes (`blend --grid`, the blend explorer's seeds box): each face is kept as a picture
#: per column, and `blend --grid` renders a column's rows in one batch, ~0.5 GB a row at 1024 px.
MAX_GRID_SEEDS = 32
#: How many seeds fine-tuning's fakes grid takes (`TrainConfig.image_seeds`, drawn at every snapshot): 8 x 8, an
#: 8192 px square at 1024 px; 0-9999 made a 3604 px grid of 32 px images, 42 s and 1.5 GB a snapshot.
MAX_IMAGE_SEEDS = 64

# The web app (`toonlib app`, `ToonApp`).
# optimisation steps offered first in mode optimize (the pipeline's default, 500, is a long wait on a page);
# without --steps (steps=), e4e+optimize starts at its own 100 (`pipeline.start_steps`)
DEFAULT_STEPS = 200
MAX_STEPS = 1000  # the steps slider's end; more steps hold the shared queue for everyone else
MAX_PIXELS = 50_000_000  # larger photos are refused before they are decoded (48 MP phone photos pass)
DEFAULT_SWAP_RES = 32  # the swap resolution chosen first (clamped to the model's resolution)
PORTS = (1, 65535)  # the ports the app serves on (--port, launch's port=); 0 would be any free one
