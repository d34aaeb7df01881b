"""README "Layout" matches the tree: every module and sub-package of src/facemtl is listed, nothing listed is gone."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "facemtl"
SKIP = {"__init__.py", "__main__.py", "__pycache__", "py.typed"}


def _layout() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Layout\n+```\n(.*?)```", text, re.S | re.M)
    assert m, "README.md has no '## Layout' section with a code block"
    return m.group(1)


def _entries(folder: Path) -> set[str]:
    out = set()
    for p in folder.iterdir():
        if p.name in SKIP or p.name.startswith("."):
            continue
        if p.is_dir() and (p / "__init__.py").is_file():
            out.add(p.name + "/")
        elif p.suffix == ".py":
            out.add(p.name)
    return out


def test_every_top_level_module_and_package_is_listed_and_nothing_else():
    layout = _layout()
    listed = set(re.findall(r"^  ([A-Za-z_][\w]*(?:\.py|/))", layout, re.M))
    actual = _entries(PKG)
    assert sorted(actual - listed) == [], "in src/facemtl but not in README Layout"
    assert sorted(listed - actual) == [], "in README Layout but not in src/facemtl"


def test_every_module_of_each_package_is_named_in_its_entry():
    layout = _layout()
    blocks = re.split(r"^  (?=[A-Za-z_])", layout, flags=re.M)
    by_name = {b.split()[0]: b for b in blocks if b.strip()}
    for pkg in sorted(e for e in _entries(PKG) if e.endswith("/")):
        text = by_name.get(pkg, "")
        for mod in sorted(_entries(PKG / pkg.rstrip("/"))):
            stem = mod.removesuffix(".py").rstrip("/")
            assert re.search(rf"\b{re.escape(stem)}\b", text), f"README Layout entry {pkg} does not name {mod}"
