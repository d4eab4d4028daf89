"""docs/products.md §1 says that every block in it is a verbatim excerpt of cbra.toml: hold it to that."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTS_MD = ROOT / "docs" / "products.md"
CBRA_TOML = ROOT / "workflows" / "products" / "cbra.toml"


def section_one() -> str:
    text = PRODUCTS_MD.read_text()
    start = re.search(r"^## 1\. .*`cbra`.*$", text, flags=re.MULTILINE)
    assert start, "docs/products.md has no '## 1. … `cbra`' section"
    rest = text[start.end():]
    end = re.search(r"^## ", rest, flags=re.MULTILINE)
    return rest[:end.start()] if end else rest


def toml_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def test_section_one_has_the_excerpts():
    assert len(toml_blocks(section_one())) >= 7  # top keys, grid, inputs, model, window+stitch, post, output


def test_every_cbra_excerpt_is_verbatim():
    toml = CBRA_TOML.read_text()
    wrong = [block.strip() for block in toml_blocks(section_one()) if block.strip() not in toml]
    assert not wrong, "not verbatim in workflows/products/cbra.toml:\n\n" + "\n\n---\n\n".join(wrong)


def test_the_checker_finds_blocks():
    md = "## 1. x `cbra`\n\ntext\n\n```toml\na = 1\n```\n\n```python\nb = 2\n```\n\n```toml\n[c]\nd = 3\n```\n"
    assert toml_blocks(md) == ["a = 1\n", "[c]\nd = 3\n"]
