"""docs/design.md is cited correctly: every `docs/design.md section N` in the code, tests, benchmarks, notebooks
and README names a `## N.` heading of it, nothing cites it by an old name (DESIGN.md, "DESIGN section N"), and
its section 2 lists every module and the whole public API."""
from __future__ import annotations

import re
from pathlib import Path

import toonlib

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
# Where citations live; this file is left out because its examples are made-up citations.
SCANNED = ("toonlib", "tests", "benchmarks", "notebooks", "examples", ".ci", "README.md", "pyproject.toml")
TEXT_SUFFIXES = (".py", ".ipynb", ".md", ".txt", ".toml", ".yml", ".yaml", ".cfg")

CITATION = re.compile(r"docs/design\.md,?\s+(sections?\s+\d+(?:(?:\s*,\s*|\s+and\s+)\d+)*)")
INTERNAL = re.compile(r"\b(sections?\s+\d+(?:(?:\s*,\s*|\s+and\s+)\d+)*)")
OLD_NAMES = re.compile(r"\bDESIGN\b|(?<!docs/)\bdesign\.md\b|\b[Dd]esign section\b")


def design_sections(text: str) -> dict[int, str]:
    """The numbered sections of the design document: number -> text (heading included)."""
    parts = re.split(r"(?m)^(?=## \d+\. )", text)
    return {int(re.match(r"## (\d+)\.", part).group(1)): part for part in parts if re.match(r"## \d+\. ", part)}


def cited_sections(text: str, pattern: re.Pattern = CITATION) -> list[int]:
    """Every section number `text` cites ("docs/design.md section 7", "... sections 8 and 13")."""
    return [int(n) for match in pattern.finditer(text) for n in re.findall(r"\d+", match.group(1))]


def old_citations(text: str) -> list[str]:
    """Citations of the design document by a name other than docs/design.md."""
    return [match.group(0) for match in OLD_NAMES.finditer(text)]


def scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in sorted(path.rglob("*")) if p.is_file()
                      and (p.suffix in TEXT_SUFFIXES or p.parent.name == ".ci")
                      and "__pycache__" not in p.parts]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def test_the_helpers_find_wrong_citations():
    """The checks below can fail: a made-up section and the old names are caught, the right form is not."""
    sections = design_sections(DESIGN.read_text())
    sample = "as in docs/design.md section 99, see docs/design.md sections 2 and 3 or docs/design.md,\nsection 7"
    assert cited_sections(sample) == [99, 2, 3, 7]
    assert [n for n in cited_sections(sample) if n not in sections] == [99]
    assert old_citations("recipe (DESIGN.md section 6); (DESIGN section 8); (design.md section 8); "
                         "design section 14") == ["DESIGN", "DESIGN", "design.md", "design section"]
    assert old_citations("docs/design.md section 8, by design, Designing an Encoder") == []


def test_the_design_document_has_its_sections_in_order():
    numbers = list(design_sections(DESIGN.read_text()))
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_citation_names_an_existing_section():
    sections = design_sections(DESIGN.read_text())
    files = scanned_files()
    assert any(p.name == "projection.py" for p in files)  # the scan reaches the package
    wrong = [f"{p.relative_to(ROOT)}: section {n}" for p in files for n in cited_sections(p.read_text(errors="replace"))
             if n not in sections]
    assert not wrong, f"citations of docs/design.md sections that do not exist: {wrong}"
    internal = [n for n in cited_sections(DESIGN.read_text(), INTERNAL) if n not in sections]
    assert not internal, f"docs/design.md refers to its own sections {internal}, which do not exist"


def test_nothing_cites_the_design_document_by_an_old_name():
    old = [f"{p.relative_to(ROOT)}: {hit!r}" for p in scanned_files()
           for hit in old_citations(p.read_text(errors="replace"))]
    assert not old, f"cite it as `docs/design.md section N`: {old}"


def test_section_2_lists_every_module_and_the_public_api():
    layout = design_sections(DESIGN.read_text())[2]
    package = ROOT / "toonlib"
    unlisted = [str(p.relative_to(package)) for p in sorted(package.rglob("*.py"))
                if "__pycache__" not in p.parts and p.name not in layout]
    assert not unlisted, f"docs/design.md section 2 does not list {unlisted}"
    api = layout[layout.index("Public API"):].split("\n\n")[0]
    listed = set(re.findall(r"`([A-Za-z]\w*)`", api))
    assert listed == set(toonlib.__all__), (f"missing: {sorted(set(toonlib.__all__) - listed)}, "
                                           f"not exported: {sorted(listed - set(toonlib.__all__))}")
