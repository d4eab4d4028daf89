"""Write examples/china.geojson: China's outline from Natural Earth (1:110m admin-0 countries, public domain).

The data is the copy the geopandas 0.14.4 wheel ships (geopandas/datasets/naturalearth_lowres); nothing is
downloaded at run time, and mapgen does not depend on geopandas 0.14:

    pip download --no-deps geopandas==0.14.4 -d /tmp/gp
    python tools/make_china_geojson.py /tmp/gp/geopandas-0.14.4-py3-none-any.whl

China (CHN) and Taiwan (TWN) are dissolved into one MultiPolygon (the provinces the CBRA paper lists
include Taipei).
"""

from __future__ import annotations

import json
import sys
import tempfile
import zipfile
from pathlib import Path

import pyogrio
import shapely

SHAPEFILE = "geopandas/datasets/naturalearth_lowres/naturalearth_lowres"
OUT = Path(__file__).resolve().parents[1] / "examples" / "china.geojson"


def main(wheel: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        for suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
            zf.extract(SHAPEFILE + suffix, tmp)
        countries = pyogrio.read_dataframe(Path(tmp) / f"{SHAPEFILE}.shp")
    outline = shapely.union_all(countries[countries.iso_a3.isin(["CHN", "TWN"])].geometry.values)
    feature = {"type": "Feature", "geometry": shapely.geometry.mapping(outline), "properties": {
        "name": "China", "iso_a3": "CHN",
        "source": "Natural Earth 1:110m Admin 0 – Countries (public domain), as shipped in geopandas 0.14.4 "
                  "datasets/naturalearth_lowres; CHN and TWN dissolved"}}
    OUT.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    print(f"{OUT}: {outline.geom_type}, {len(outline.geoms)} parts, bounds {outline.bounds}")


if __name__ == "__main__":
    main(sys.argv[1])
