"""`python -m toonlib.train ...` and `torchrun --nproc_per_node=N -m toonlib.train ...`."""
import sys

from .arguments import main

sys.exit(main())
