"""The reference data is what its READMEs say: every file in their tables exists and matches its checksum."""
from __future__ import annotations

import hashlib
import re

import pytest
from conftest import FIXTURES


@pytest.mark.parametrize("folder", [FIXTURES, FIXTURES / "encoders"])
def test_checksums_match(folder):
    lines = (folder / "SHA256SUMS").read_text().split("\n")
    entries = [line.split() for line in lines if line.strip()]
    assert entries
    for digest, name in entries:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_every_file_in_the_readme_table_exists():
    text = (FIXTURES / "README.md").read_text()
    table = text[text.index("| file | size | what |"):].split("\n\n")[0].splitlines()[2:]  # the file table
    named = [re.match(r"\| `([^`]+)`", line).group(1) for line in table]
    assert len(named) >= 10
    missing = [name for name in named if not (FIXTURES / name.rstrip("/")).exists()]
    assert missing == []
    on_disk = {p.name for p in FIXTURES.iterdir()} - {"README.md"}
    assert on_disk <= {name.rstrip("/") for name in named}, "files not described in the README"
