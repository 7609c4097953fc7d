"""`files.upload` / `files.download` as Colab's: upload returns {name: bytes}, {} for a cancelled dialog."""
import json
import os
from pathlib import Path

from . import log


def upload() -> dict:
    queue = Path(os.environ["FAKE_COLAB_UPLOADS"])
    answers = json.loads(queue.read_text())
    if not answers:
        raise AssertionError("the fake upload dialog was opened more often than the test expected")
    answer, rest = answers[0], answers[1:]
    queue.write_text(json.dumps(rest))
    log(f"upload {answer}")
    return {Path(p).name: Path(p).read_bytes() for p in answer}


def download(path: str) -> None:
    log(f"download {path}")
