"""QGIS layer styles (`.qml`) of a run's maps: the classes by name and colour as a paletted renderer.

QGIS loads `NAME.qml` beside a raster `NAME.tif` / `NAME.vrt` as the layer's default style, so every tile
and every mosaic gets its own copy: opened either way, the layer shows the legend by class name. No data is
transparent (the renderer's empty no-data colour), and so is the background class of a binary map
(`transparent_values`): drawn opaque, CBRA's black background hid the basemap under the rooftops.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from mapgen.files import write_text
from mapgen.workflows import OutputSpec

from .classes import BACKGROUND

# The QGIS release the styles are written for (and checked with, tools/open_in_qgis.py); later ones read them.
QGIS_VERSION = "3.22.16"


def transparent_values(spec: OutputSpec) -> frozenset[int]:
    """Pixel values drawn transparent besides no data: a binary map's background class (code
    `BACKGROUND`), so that only what was found covers the layers under it."""
    if len(spec.classes) == 2:
        return frozenset({spec.classes[BACKGROUND].value})
    return frozenset()


def style_path(raster: str | Path) -> Path:
    """Where the style QGIS loads by default for `raster` lies: beside it, named `.qml`."""
    return Path(raster).with_suffix(".qml")


def qml(spec: OutputSpec) -> str:
    """The QGIS style of an output's maps: band 1 paletted by its classes (label = class name), nearest
    resampling (class codes are not to be blended), no data and `transparent_values` transparent."""
    clear = transparent_values(spec)
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", enabled="false", zoomedInResamplingMethod="nearestNeighbour",
                  zoomedOutResamplingMethod="nearestNeighbour", maxOversampling="2")
    # nodataColor "": pixels equal to the band's nodata value are not drawn
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1",
                             nodataColor="")
    palette = ET.SubElement(renderer, "colorPalette")
    for c in spec.classes:
        r, g, b, a = c.rgba
        ET.SubElement(palette, "paletteEntry", value=str(c.value), label=c.name, color=f"#{r:02x}{g:02x}{b:02x}",
                      alpha=str(0 if c.value in clear else a))
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, "unicode") + "\n"


def write_styles(rasters: Iterable[str | Path], spec: OutputSpec, *, scratch_dir: Path | None = None) -> list[Path]:
    """Write the style of `spec` beside each raster (atomically, temporaries in `scratch_dir`); returns the
    style files."""
    text = qml(spec)
    written = []
    for raster in rasters:
        path = style_path(raster)
        write_text(path, text, scratch_dir=scratch_dir, suffix=".partial")
        written.append(path)
    return written
