"""docs/architecture.md's module table names every module of the tree, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = ("chargectl", "drivers", "sim")


def documented() -> set[Path]:
    """Every file the module table names: a row's first cell lists code spans; a bare name
    after the first is in the first one's directory; a glob stands for what it matches."""
    table = DOC.split("## Modules", 1)[1].split("\n## ", 1)[0]
    named: set[Path] = set()
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        spans = re.findall(r"`([^`]+)`", line.split("|")[1])
        folder = Path(spans[0]).parent
        for span in spans:
            path = Path(span) if "/" in span else folder / span
            matches = sorted(ROOT.glob(str(path)))
            assert matches, f"docs/architecture.md names {span}, which is not in the tree"
            named.update(m.relative_to(ROOT) for m in matches if m.name != "__init__.py")
    return named


def in_tree() -> set[Path]:
    files = {
        p.relative_to(ROOT)
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    return files | {p.relative_to(ROOT) for p in (ROOT / "drivers/templates").glob("*.yaml")}


def test_the_module_table_matches_the_tree() -> None:
    named = documented()
    tree = in_tree()
    assert sorted(tree - named) == [], "modules missing from docs/architecture.md's table"
    assert sorted(named - tree) == [], "docs/architecture.md names files outside the tree"


def test_the_one_tick_diagram_names_modules_that_exist() -> None:
    diagram = DOC.split("## One tick", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"\b([a-z_]+/[a-z_]+\.py)\b", diagram))
    assert names, "the diagram names no module"
    for name in names:
        assert (ROOT / "chargectl" / name).is_file(), f"the one-tick diagram names {name}"
