"""A stand-in for Colab's `google.colab` package, replacing it at its boundary only (drive, files).

Put `tests/fake_colab` first on sys.path (or PYTHONPATH, for a notebook kernel) and choose what the
"user" does through environment variables, so the same fake works in-process and in a kernel:

- FAKE_COLAB_DRIVE: "decline" (drive.mount raises like Colab when the user refuses access) or
  "accept" (the mount point gets a MyDrive folder).
- FAKE_COLAB_UPLOADS: a JSON file holding a list of answers to the upload dialog, one per call, each a
  list of file paths; [] is a cancelled dialog. Each call consumes the first answer.
- FAKE_COLAB_LOG: a file each fake call appends one line to ("mount ...", "upload ...", "download ...").
"""
import os


def log(line: str) -> None:
    """Append one line to $FAKE_COLAB_LOG (when set)."""
    path = os.environ.get("FAKE_COLAB_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
