"""Open mapgen outputs in QGIS the way users do, print what QGIS sees, and render the last one to PNG.

Needs Debian's QGIS (apt-get install qgis python3-qgis) and its Python:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tools/open_in_qgis.py render.png OUT/CBRA_2019_*.tif OUT/CBRA_2019.vrt
Exits non-zero if a layer is invalid, not EPSG:4326, not one paletted band, or a tile has no overviews.
"""

import os
import sys

from qgis.core import Qgis, QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

app = QgsApplication([], False)
app.initQgis()
print("QGIS", Qgis.QGIS_VERSION)
ok = True
layers = []
for path in sys.argv[2:]:
    layer = QgsRasterLayer(path, os.path.basename(path))
    provider = layer.dataProvider()
    renderer = layer.renderer().type() if layer.renderer() else None
    print(f"{os.path.basename(path)}: valid {layer.isValid()}, crs {layer.crs().authid()}, "
          f"{layer.width()}×{layer.height()}, bands {layer.bandCount()}, renderer {renderer}, "
          f"band '{layer.bandName(1)}', overviews {provider.hasPyramids()}, "
          f"nodata {provider.sourceNoDataValue(1) if provider.sourceHasNoDataValue(1) else None}")
    # a VRT has no overviews of its own: GDAL reads those of its tiles
    ok &= (layer.isValid() and layer.crs().authid() == "EPSG:4326" and layer.bandCount() == 1
           and renderer == "paletted" and (provider.hasPyramids() or path.endswith(".vrt")))
    layers.append(layer)
settings = QgsMapSettings()
settings.setLayers(layers[-1:])
settings.setExtent(layers[-1].extent())
settings.setOutputSize(QSize(800, 800))
settings.setBackgroundColor(QColor(255, 255, 255))
job = QgsMapRendererParallelJob(settings)
job.start()
job.waitForFinished()
job.renderedImage().save(sys.argv[1])
print("rendered", sys.argv[1])
app.exitQgis()
sys.exit(0 if ok else 1)
