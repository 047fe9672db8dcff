"""The package's map stays complete: every module of pack427 is named in the package
docstring and in the README's layout, so a newcomer finds it from either."""

from __future__ import annotations

import re

from support.emulator import ROOT

import pack427

PACKAGE = ROOT / "functions" / "pack427"


def modules() -> set[str]:
    found = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return found | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_the_package_docstring_names_every_module():
    named = set(re.findall(r"\b[a-z_]+\b", pack427.__doc__ or ""))
    assert modules() - named == set()


def test_the_readme_layout_names_every_module():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b([a-z_]+)(?:\.py|/)", layout))
    assert modules() - named == set()
