"""docs/products.md shows each shipped product's file: §1 in excerpts of cbra.toml, §2 the other products'
files. Hold every ```toml block of a product's section to being verbatim in that product's file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTS_MD = ROOT / "docs" / "products.md"
PRODUCTS_DIR = ROOT / "workflows" / "products"
CBRA_TOML = PRODUCTS_DIR / "cbra.toml"
SHIPPED = sorted(p.stem for p in PRODUCTS_DIR.glob("*.toml"))

# The heading that opens each product's section: cbra's is §1 (its subsections are ### headings inside it);
# the others' are ### headings of §2, each named by the product first.
HEADINGS = {"cbra": r"^## 1\. .*`cbra`.*$"}


def heading(product: str) -> str:
    return HEADINGS.get(product, rf"^### `{re.escape(product)}`.*$")


def section(product: str, text: str | None = None) -> str:
    """The text of a product's section, up to the next heading of the same or a higher level (a `# comment`
    inside a fenced block is no heading)."""
    lines = (PRODUCTS_MD.read_text() if text is None else text).splitlines(keepends=True)
    fenced, start, level = False, None, 0
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        depth = len(line) - len(line.lstrip("#"))
        if start is None and re.match(heading(product), line.rstrip("\n")):
            start, level = i + 1, depth
        elif start is not None and depth <= level:
            return "".join(lines[start:i])
    assert start is not None, f"docs/products.md has no section for {product} (a heading matching {heading(product)!r})"
    return "".join(lines[start:])


def section_one() -> str:
    return section("cbra")


def toml_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def test_the_products_are_found():
    assert {"cbra", "ugs", "fusu", "stsun"} <= set(SHIPPED)  # else the parametrised test below checks nothing


def test_section_one_has_the_excerpts():
    assert len(toml_blocks(section_one())) >= 7  # top keys, grid, inputs, model, window+stitch, post, output


def test_every_cbra_excerpt_is_verbatim():
    toml = CBRA_TOML.read_text()
    wrong = [block.strip() for block in toml_blocks(section_one()) if block.strip() not in toml]
    assert not wrong, "not verbatim in workflows/products/cbra.toml:\n\n" + "\n\n---\n\n".join(wrong)


@pytest.mark.parametrize("product", SHIPPED)
def test_every_excerpt_of_a_product_is_verbatim(product: str):
    blocks = toml_blocks(section(product))
    assert blocks, f"docs/products.md: the section of {product} shows none of {product}.toml"
    toml = (PRODUCTS_DIR / f"{product}.toml").read_text()
    wrong = [block.strip() for block in blocks if block.strip() not in toml]
    assert not wrong, f"not verbatim in workflows/products/{product}.toml:\n\n" + "\n\n---\n\n".join(wrong)


def test_the_checker_finds_blocks():
    md = "## 1. x `cbra`\n\ntext\n\n```toml\na = 1\n```\n\n```python\nb = 2\n```\n\n```toml\n[c]\nd = 3\n```\n"
    assert toml_blocks(md) == ["a = 1\n", "[c]\nd = 3\n"]


def test_the_checker_cuts_sections():
    md = ("# t\n\n## 1. The format: `cbra`\n\n```toml\na = 1\n```\n\n"
          "### `[grid]`\n\n```toml\n# a comment, no heading\nb = 2\n```\n\n"
          "## 2. Others\n\n### `ugs`: green\n\n```toml\nc = 3\n```\n\n### `fusu`: use\n\n```toml\nd = 4\n```\n\n"
          "## 3. Keys\n\n```toml\ne = 5\n```\n")
    assert toml_blocks(section("cbra", md)) == ["a = 1\n", "# a comment, no heading\nb = 2\n"]
    assert toml_blocks(section("ugs", md)) == ["c = 3\n"]
    assert toml_blocks(section("fusu", md)) == ["d = 4\n"]
