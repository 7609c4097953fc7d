"""`drive.mount` as Colab's: raises MessageError when the user declines, else the mount point gets MyDrive."""
import os
from pathlib import Path

from . import log
from ._message import MessageError


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    answer = os.environ.get("FAKE_COLAB_DRIVE", "decline")
    log(f"mount {mountpoint} {answer}")
    if answer == "decline":
        raise MessageError("Error: credential propagation was unsuccessful")
    (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)
