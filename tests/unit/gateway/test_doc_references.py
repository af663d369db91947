"""The files, modules, make targets, command-line flags and headings the docs name exist.

A file moved, a module split, a target or a flag dropped: the docs went on naming it and
nothing failed. README.md and docs/*.md are read, docs/benchmarks.md without its dated rounds
(each records the code as it was that day).
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

from fake_signer import cli as fake_signer_cli
from signing_gateway import cli as gateway_cli

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("signing_gateway", "fake_signer", "bench", "tests")
#: Where the benchmarks write their raw results: ignored by git, so absent from a checkout.
RESULTS = "bench/results/"

_PATH = re.compile(
    r"(?<![\w/.-])((?:signing_gateway|fake_signer|bench|tests|docs)/[\w/.*<-]*[\w*/])"
)
_SUBPACKAGES = "|".join(
    p.name for p in (ROOT / "signing_gateway").iterdir() if p.is_dir() and p.name[0] != "_"
)
#: A path inside signing_gateway/ written from its sub-package, as `runtime/cpu_gate.py`.
_SHORT_PATH = re.compile(rf"(?<![\w/.-])((?:{_SUBPACKAGES})/[\w/*]+\.py)\b")
_DOTTED = re.compile(rf"`((?:{'|'.join(PACKAGES)})(?:\.\w+)+)(?:\(\))?`")
_PYTHON_M = re.compile(r"python3? -m ((?:signing_gateway|fake_signer|bench)[\w.]*)")
_MAKE_SPAN = re.compile(r"`make ([\w-]+)")
_MAKE_LINE = re.compile(r"^make ([\w-]+)", re.MULTILINE)
_CODE_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LOGGER = re.compile(r"getLogger\(\"([\w.]+)\"\)")
#: A command of ours and what follows it on its line or in its code span.
_COMMAND = re.compile(
    r"(?:signing-gateway|python3? -m signing_gateway) (serve|demo)([^`\n|#;]*)"
    r"|(?:fake-signer|python3? -m fake_signer)()([^`\n|#;]*)"
    r"|`(serve|demo)( --[^`]*)`"
)
_FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
#: A Markdown link's target, not a web address or an anchor in the same document.
_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#]+)(?:#[^)]*)?\)")
#: A Markdown link to a heading: its document (empty for the same one) and the anchor.
_ANCHOR_LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s#]*)#([^)\s]+)\)")
#: A heading of a document, its level in `#`s.
_HEADING = re.compile(r"^(#{1,6}) (.+)$", re.MULTILINE)
#: An entry of a contents list: its indent and the anchor it links.
_CONTENTS_ENTRY = re.compile(r"^( *)- \[[^\]]+\]\(#([^)]+)\)$", re.MULTILINE)


def _document_paths() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _documents() -> Iterator[tuple[str, str]]:
    """Each document's name and the text checked in it."""
    for path in _document_paths():
        text = path.read_text(encoding="utf-8")
        if path.name == "benchmarks.md":
            # Each round is a `### ... round` section under `## Profile of the S3 path`; the
            # next `## ` heading ends them.
            rounds = re.compile(r"^### .*round.*?(?=^## )", re.MULTILINE | re.DOTALL)
            text = rounds.sub("", text)
        yield path.name, text


def _found(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(document, reference) for each match's first non-empty group, in every document."""
    return [
        (name, next(group for group in match.groups() if group))
        for name, text in _documents()
        for match in pattern.finditer(text)
    ]


def _exists(path: str) -> bool:
    path = path.rstrip("/.")
    if "<" in path:  # a placeholder: `bench/results/<time>.json`
        path = path.split("<", 1)[0].rstrip("/")
    if "*" in path:
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


def _loggers() -> set[str]:
    """The logger names the code asks for by name."""
    return {
        name
        for package in PACKAGES[:3]
        for source in (ROOT / package).rglob("*.py")
        for name in _LOGGER.findall(source.read_text(encoding="utf-8"))
    }


def _resolves(dotted: str) -> bool:
    """An importable module, optionally followed by attributes it has."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _command_options() -> dict[str, set[str]]:
    """Each command's flags, as its parser takes them."""
    parser = gateway_cli._parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: _options(sub) for name, sub in commands.choices.items()} | {
        "": _options(fake_signer_cli._parser())
    }


def _make_targets_named() -> list[tuple[str, str]]:
    """`make x` in a code span, and each line of a code block that runs make."""
    named = []
    for name, text in _documents():
        named += [(name, target) for target in _MAKE_SPAN.findall(text)]
        for block in _CODE_BLOCK.findall(text):
            named += [(name, target) for target in _MAKE_LINE.findall(block)]
    return named


def test_every_file_path_named_exists() -> None:
    """`signing_gateway/...`, `tests/...`, `bench/...` and `runtime/cpu_gate.py` alike."""
    paths = _found(_PATH) + [(doc, f"signing_gateway/{p}") for doc, p in _found(_SHORT_PATH)]
    assert len(paths) > 100  # the patterns still find the docs' paths
    missing = [(doc, p) for doc, p in paths if not p.startswith(RESULTS) and not _exists(p)]
    assert missing == []


def test_every_module_and_name_named_exists() -> None:
    """`bench.profile.FEATURES` is an attribute of an importable module, or a logger's name."""
    names = _found(_DOTTED) + _found(_PYTHON_M)
    assert len(names) > 50
    loggers = _loggers()
    missing = [(doc, n) for doc, n in names if n not in loggers and not _resolves(n)]
    assert missing == []


def test_every_make_target_named_exists() -> None:
    """`make bench`, `make lint` ...: targets of the Makefile."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    named = _make_targets_named()
    assert len(named) > 5
    assert [(doc, t) for doc, t in named if t not in targets] == []


def test_every_flag_given_to_our_commands_exists() -> None:
    """`serve --events-per-pass`, `python -m fake_signer --latency-ms 200`: flags they take."""
    options = _command_options()
    given = [
        (doc, match.group(1) or match.group(3) or match.group(5) or "", flag)
        for doc, text in _documents()
        for match in _COMMAND.finditer(text)
        for flag in _FLAG.findall(match.group(2) or match.group(4) or match.group(6) or "")
    ]
    assert len(given) > 20
    unknown = [(doc, command, flag) for doc, command, flag in given if flag not in options[command]]
    assert unknown == []


def test_every_relative_link_resolves() -> None:
    """A link in docs/operations.md, `(alerts/signing-gateway.rules.yml)`: from its folder.

    A path in a link is written from where its document lies, not from the repository's root,
    so the path patterns above do not see it.
    """
    links = [
        (path.name, target)
        for path in _document_paths()
        for target in _LINK.findall(path.read_text(encoding="utf-8"))
    ]
    assert len(links) > 5
    folder = {path.name: path.parent for path in _document_paths()}
    assert [(doc, t) for doc, t in links if not (folder[doc] / t).exists()] == []


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(text: str) -> list[tuple[int, str]]:
    """Each heading's level and anchor, code blocks left out; a repeated one numbered (`-1`)."""
    found = []
    seen: dict[str, int] = {}
    for match in _HEADING.finditer(_CODE_BLOCK.sub("", text)):
        anchor = _anchor(match.group(2))
        found.append(
            (len(match.group(1)), f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        )
        seen[anchor] = seen.get(anchor, 0) + 1
    return found


def test_every_link_to_a_heading_finds_it() -> None:
    """`[Probes](#probes)`, `(operations.md#when-an-alert-fires)`: the heading is there.

    A heading renamed leaves every link to it landing at the top of the page.
    """
    paths = _document_paths()
    anchors = {path: {a for _, a in _headings(path.read_text("utf-8"))} for path in paths}
    links = [
        (path, (path.parent / target).resolve() if target else path, anchor)
        for path in paths
        for target, anchor in _ANCHOR_LINK.findall(path.read_text("utf-8"))
    ]
    assert len(links) > 20
    assert [
        (path.name, target.name, anchor)
        for path, target, anchor in links
        if anchor not in anchors.get(target, set())
    ] == []


def test_a_contents_list_names_every_heading_below_it_in_order() -> None:
    """The guide's `## Contents`: each `##` and `###` heading after it, nested by level."""
    checked = 0
    for path in _document_paths():
        text = path.read_text("utf-8")
        if "\n## Contents\n" not in text:
            continue
        listed, _, rest = text.partition("\n## Contents\n")[2].partition("\n## ")
        entries = [(2 + len(indent) // 2, a) for indent, a in _CONTENTS_ENTRY.findall(listed)]
        below = [(level, a) for level, a in _headings("## " + rest) if level in (2, 3)]
        assert entries == below, path.name
        checked += 1
    assert checked >= 1
