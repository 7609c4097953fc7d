"""`python -m toonlib.train ...` and `torchrun --nproc_per_node=N -m toonlib.train ...`."""
from ..messages import run_program
from .arguments import main

run_program(main)
