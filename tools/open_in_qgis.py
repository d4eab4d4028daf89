"""Open mapgen outputs in QGIS the way users do, print what QGIS sees, and render the last one to PNG.

Needs Debian's QGIS (apt-get install qgis python3-qgis) and its Python:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tools/open_in_qgis.py render.png OUT/CBRA_2019_*.tif OUT/CBRA_2019.vrt
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tools/open_in_qgis.py --basemap SCENE/2021/s2.tif \
        --legend legend.png render.png OUT/CBRA_2021.vrt
Each layer is opened as QGIS opens a file (its `.qml` beside it loaded as the default style). Exits non-zero
if a layer is invalid, not EPSG:4326, not one paletted band, a tile has no overviews, or its legend does
not name its classes (the style was not applied). `--basemap` draws the last layer over another raster;
`--legend` also writes a print layout of that map with its legend to PNG.
"""

import argparse
import os
import sys

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsLayoutExporter,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsPrintLayout,
    QgsProject,
    QgsRasterLayer,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("render", help="PNG of the last layer (over the basemap)")
parser.add_argument("layers", nargs="+", help="tiles and VRTs to open")
parser.add_argument("--basemap", help="a raster to draw under the last layer")
parser.add_argument("--legend", help="PNG of a print layout: the map and its legend")
args = parser.parse_args()

app = QgsApplication([], False)
app.initQgis()
print("QGIS", Qgis.QGIS_VERSION)
ok = True
layers = []
for path in args.layers:
    layer = QgsRasterLayer(path, os.path.basename(path))  # loads NAME.qml beside it, as QGIS does
    provider = layer.dataProvider()
    renderer = layer.renderer()
    kind = renderer.type() if renderer else None
    classes = renderer.classes() if kind == "paletted" else []
    print(f"{os.path.basename(path)}: valid {layer.isValid()}, crs {layer.crs().authid()}, "
          f"{layer.width()}×{layer.height()}, bands {layer.bandCount()}, renderer {kind}, "
          f"band '{layer.bandName(1)}', overviews {provider.hasPyramids()}, "
          f"nodata {provider.sourceNoDataValue(1) if provider.sourceHasNoDataValue(1) else None}")
    for c in classes:
        print(f"    {c.value:g} '{c.label}' {c.color.name()} alpha {c.color.alpha()}")
    # a VRT has no overviews of its own: GDAL reads those of its tiles; without the style QGIS labels a
    # paletted band's classes by their values
    named = bool(classes) and all(c.label and c.label != f"{c.value:g}" for c in classes)
    ok &= (layer.isValid() and layer.crs().authid() == "EPSG:4326" and layer.bandCount() == 1
           and kind == "paletted" and named and (provider.hasPyramids() or path.endswith(".vrt")))
    layers.append(layer)

shown = layers[-1:]
if args.basemap:
    basemap = QgsRasterLayer(args.basemap, "basemap: " + os.path.basename(args.basemap))
    ok &= basemap.isValid()
    renderer = basemap.renderer()
    names = [basemap.bandName(i).split(": ")[-1].split(" ")[0] for i in range(1, basemap.bandCount() + 1)]
    if renderer and renderer.type() == "multibandcolor" and {"B4", "B3", "B2"} <= set(names):
        # a Sentinel-2 stack in band order B2 B3 B4 …: show it in true colour
        renderer.setRedBand(names.index("B4") + 1)
        renderer.setGreenBand(names.index("B3") + 1)
        renderer.setBlueBand(names.index("B2") + 1)
    shown.append(basemap)  # QGIS draws the first layer on top
settings = QgsMapSettings()
settings.setLayers(shown)
settings.setDestinationCrs(layers[-1].crs())
settings.setExtent(layers[-1].extent())
settings.setOutputSize(QSize(800, 800))
settings.setBackgroundColor(QColor(255, 255, 255))
job = QgsMapRendererParallelJob(settings)
job.start()
job.waitForFinished()
job.renderedImage().save(args.render)
print("rendered", args.render)

if args.legend:
    project = QgsProject.instance()
    for layer in shown:
        project.addMapLayer(layer)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()  # one A4 landscape page
    the_map = QgsLayoutItemMap(layout)
    the_map.attemptMove(QgsLayoutPoint(8, 8, QgsUnitTypes.LayoutMillimeters))
    the_map.attemptResize(QgsLayoutSize(190, 190, QgsUnitTypes.LayoutMillimeters))
    the_map.setCrs(layers[-1].crs())
    the_map.setLayers(shown)
    the_map.setExtent(layers[-1].extent())
    layout.addLayoutItem(the_map)
    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(the_map)
    legend.attemptMove(QgsLayoutPoint(204, 8, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(legend)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 96
    # a picture for people: no world file, and no georeferencing or metadata written into the PNG, which
    # GDAL's PNG driver cannot update
    settings.generateWorldFile = False
    settings.exportMetadata = False
    result = QgsLayoutExporter(layout).exportToImage(args.legend, settings)
    ok &= result == QgsLayoutExporter.Success
    print("legend", args.legend, "exported" if result == QgsLayoutExporter.Success else f"failed ({result})")

    del legend, the_map, layout  # the layout's items hold the layers; free them before the project does
    project.removeAllMapLayers()

app.exitQgis()
# Python's own teardown after exitQgis() frees Qt objects a second time and segfaults in standalone
# PyQGIS scripts; the work is done and flushed, so leave without it
sys.stdout.flush()
sys.stderr.flush()
os._exit(0 if ok else 1)
