"""Where inputs come from: files on disk (patterns, static STAC catalogs), synthetic scenes."""

from .base import LayerFiles, SourceError
from .check import check_source
from .files import open_source
from .lazy import open_box
from .read import read_box

__all__ = ["LayerFiles", "SourceError", "check_source", "open_box", "open_source", "read_box"]
