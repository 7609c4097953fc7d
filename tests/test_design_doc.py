"""docs/design.md is cited correctly: every `docs/design.md section N` in the code, tests, benchmarks, notebooks
and README names a `## N.` heading of it, nothing cites it by an old name (DESIGN.md, "DESIGN section N"), and
its section 2 lists every module and the whole public API. The dotted toonlib names (`convolution.winograd`,
`Toonifier.set_blend`) and the command-line options (`--swap-res`) that it and the README give exist."""
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


# ---------------------------------------------------------------------------------------------------------------
# Names and options the documents mention exist: a renamed function or option fails here, not in a reader's hands.
# Section 11 is left out: it is a dated record of measurements, which may name code of its day.

README = ROOT / "README.md"
FILE_SUFFIXES = {"py", "md", "toml", "yml", "txt", "json", "jsonl", "png", "jpg", "pt", "pkl", "npz", "mp4",
                 "safetensors", "lock", "holder", "tar", "zip"}
# Options of other programs that the documents quote (pip, torchrun, NVIDIA's train.py) and one misspelling
# they show on purpose (what the command line answers to `toonlib --verison`).
OTHER_OPTIONS = {"--index-url", "--nproc_per_node", "--aug", "--augpipe", "--freezed", "--verison"}
DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*)(?![\w>=-]|-[^-\s])|(?<![\w-])(--[a-z][\w-]*)=")


def current_text(path: Path) -> str:
    """A document without its diagrams (fenced blocks without a language; ```bash and ```python blocks stay) and
    without design section 11."""
    lines, fence = [], None  # fence: the info string of the block the line is in (None: outside any)
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence != "":
            lines.append(line)
    text = "".join(lines)
    if path == DESIGN:
        text = "".join(part for number, part in design_sections(text).items() if number != 11)
    return text


def toonlib_modules() -> dict[str, object]:
    """Every importable toonlib module by the short names the documents use: `ops`, `loop`, `train.loop`, ..."""
    import importlib

    found: dict[str, list] = {}
    for path in sorted((ROOT / "toonlib").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__" or "__pycache__" in parts:
            continue
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        try:
            module = importlib.import_module(".".join(parts))
        except ImportError:  # an optional dependency missing here: its names are not checked
            continue
        for start in range(len(parts)):
            found.setdefault(".".join(parts[start:]), []).append(module)
    return {name: modules[0] for name, modules in found.items() if len(modules) == 1}


def unresolved_names(text: str, modules: dict[str, object]) -> list[str]:
    """The backticked dotted names of `text` that start with a toonlib module (`convolution.winograd`,
    `train.loop._CtrlC`) or a class of toonlib's (`Toonifier.set_blend`) and do not resolve: an attribute, a method or
    a dataclass field."""
    import inspect

    classes: dict[str, set] = {}
    for module in {id(module): module for module in modules.values()}.values():
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__.startswith("toonlib"):
                classes.setdefault(name, set()).add(value)
    wrong = []
    for quoted in re.findall(r"`([^`\n]+)`", text):
        for ref in DOTTED.findall(quoted):
            parts = ref.split(".")
            if parts[-1] in FILE_SUFFIXES:
                continue
            for i in range(len(parts) - 1, 0, -1):  # the longest module name it starts with
                if ".".join(parts[:i]) in modules:
                    obj, rest = modules[".".join(parts[:i])], parts[i:]
                    break
            else:
                if len(classes.get(parts[0], ())) != 1:
                    continue  # not toonlib's (torch.load, gr.State, skimage.data.astronaut, ...)
                obj, rest = next(iter(classes[parts[0]])), parts[1:]
            for attribute in rest:
                # a dataclass's fields, and the attributes a class declares (`ImageDataset.content_key: str`)
                fields = ({**getattr(obj, "__dataclass_fields__", {}), **inspect.get_annotations(obj)}
                          if inspect.isclass(obj) else {})
                if hasattr(obj, attribute):
                    obj = getattr(obj, attribute)
                elif attribute in fields:
                    break
                else:
                    wrong.append(ref)
                    break
    return wrong


def command_line_options() -> set[str]:
    """Every option of `toonlib` and its commands (finetune's are `python -m toonlib.train`'s), and of the
    benchmark scripts."""
    import argparse

    from toonlib.cli import build_parser

    options: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            options.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        options.update(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text()))
    return options


def unknown_options(text: str, options: set[str]) -> list[str]:
    """The `--options` written in `text` that no toonlib command or benchmark takes (other programs' aside)."""
    written = {a or b for a, b in OPTION.findall(text)}
    return sorted(written - options - OTHER_OPTIONS)


def test_the_name_and_option_checks_can_fail():
    modules = toonlib_modules()
    assert {"ops", "loop", "train.loop", "cli", "checkpoints"} <= set(modules)
    sample = ("`convolution.winograd()`, `train.loop._CtrlC`, `Toonifier.set_blend`, `Session.note`, `torch.load`, "
              "`app.py`; `ops.no_such_function`, `Toonifier.no_such_method`, `messages.warn.nothing`")
    assert unresolved_names(sample, modules) == ["ops.no_such_function", "Toonifier.no_such_method",
                                                 "messages.warn.nothing"]
    options = command_line_options()
    assert unknown_options("--swap-res 32, --freeze-g, --no-progress, --aug=ada, photo --align--> crop, "
                           "--no-such-option, --kimg=20, --bogus=1", options) == ["--bogus", "--no-such-option"]
    # the README's diagram ("--render(w)-->") is left out, its commands are kept
    assert "--render" in README.read_text() and "--render" not in current_text(README)
    assert "toonlib toonify me.jpg" in current_text(README)


def test_the_dotted_names_the_documents_give_exist():
    modules = toonlib_modules()
    wrong = {path.name: unresolved_names(current_text(path), modules) for path in (DESIGN, README)}
    assert not any(wrong.values()), f"names that toonlib does not have (renamed or removed?): {wrong}"


def test_the_command_line_options_the_documents_give_exist():
    options = command_line_options()
    wrong = {path.name: unknown_options(current_text(path), options) for path in (DESIGN, README)}
    assert not any(wrong.values()), f"options that no toonlib command takes (renamed or removed?): {wrong}"
