"""The package's map stays true: every module and folder of pack427 is named in the package
docstring and in the README's layout, so a newcomer finds it from either; and imports between
the folders run one way, as the package docstring says."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.emulator import ROOT

import pack427

PACKAGE = ROOT / "functions" / "pack427"
FOUNDATION = "(root)"
MAY_IMPORT = {
    FOUNDATION: set(),
    "guarding": {FOUNDATION},
    "delivering": {FOUNDATION, "guarding"},
    "accepting": {FOUNDATION, "guarding", "delivering"},
    "reading": {FOUNDATION, "guarding", "delivering"},
    "workers": {FOUNDATION, "guarding", "delivering", "accepting"},
    "operating": {FOUNDATION, "guarding", "delivering", "accepting", "reading", "workers"},
}
"""Each folder, and the folders it may import besides itself. The foundation is the package
root with its models/ (MODELS): it imports nothing above it."""
MODELS = "models"


def modules() -> set[str]:
    """Every module and folder (the models' modules are named with models/, by kind)."""
    found = {p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__" and p.parent.name != MODELS}
    return found | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def folder_of(module: str) -> str:
    """'pack427.delivering.queue' -> 'delivering'; a module at the root or in models/ -> FOUNDATION."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in MAY_IMPORT else FOUNDATION


def imports_of(path: Path) -> set[str]:
    """The pack427 modules `path` imports, anywhere in it (functions included), as absolute names."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "pack427":
                names = [f"{module}.{a.name}" for a in node.names]
                found |= {n if (PACKAGE.parent / (n.replace(".", "/") + ".py")).exists()
                          or (PACKAGE.parent / n.replace(".", "/")).is_dir() else module for n in names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pack427"}
    return found


def violations(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        here = folder_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module in sorted(imports_of(path)):
            there = folder_of(module)
            if there != here and there not in MAY_IMPORT[here]:
                found.append(f"{path.relative_to(PACKAGE)} ({here}) imports {module} ({there})")
    return found


def test_the_package_docstring_names_every_module():
    named = set(re.findall(r"\b[a-z_]+\b", pack427.__doc__ or ""))
    assert modules() - named == set()


def test_the_readme_layout_names_every_module():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b([a-z_]+)(?:\.py|/)", layout))
    assert modules() - named == set()


def test_every_folder_is_in_the_import_rules():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders - {MODELS} == MAY_IMPORT.keys() - {FOUNDATION}


def test_imports_between_folders_run_one_way():
    assert violations(sorted(PACKAGE.rglob("*.py"))) == []


def test_an_import_against_the_direction_is_caught(tmp_path, monkeypatch):
    """The check itself: a lower folder importing a higher one, relatively or absolutely,
    at the top or inside a function, is reported."""
    delivering = PACKAGE / "delivering"
    upward = delivering / "_layout_probe.py"
    upward.write_text("from ..accepting import sending\n\n\ndef later():\n    from pack427.reading import unread\n")
    try:
        assert violations([upward]) == [
            "delivering/_layout_probe.py (delivering) imports pack427.accepting.sending (accepting)",
            "delivering/_layout_probe.py (delivering) imports pack427.reading.unread (reading)",
        ]
    finally:
        upward.unlink()
    sideways = PACKAGE / "reading" / "_layout_probe.py"
    sideways.write_text("from ..accepting.send_plan import record_expiry\nfrom .. import paths\n")
    try:
        assert violations([sideways]) == [
            "reading/_layout_probe.py (reading) imports pack427.accepting.send_plan (accepting)"]
    finally:
        sideways.unlink()
