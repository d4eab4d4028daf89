"""Where inputs come from: yearly rasters on disk, STAC scenes, Earth Engine, the Zarr cache of `mapgen fetch`."""

from .base import Inputs, Source, SourceError
from .cache import CachedSource
from .earthengine import EarthEngineSource
from .files import BandMap, FileSource
from .lazy import open_box
from .read import read_box
from .resolve import check_inputs, coverage_warnings, open_inputs
from .stac import StacScenes
from .worldcover import WorldCoverSource

__all__ = ["BandMap", "CachedSource", "EarthEngineSource", "FileSource", "Inputs", "Source", "SourceError",
           "StacScenes", "WorldCoverSource", "check_inputs", "coverage_warnings", "open_box", "open_inputs",
           "read_box"]
