"""What every source resolves to: one raster per layer and year."""

from __future__ import annotations

from dataclasses import dataclass, field


class SourceError(ValueError):
    """A source that cannot serve the run: one line saying what and where."""


def year_span(years: list[int] | tuple[int, ...]) -> str:
    years = sorted(years)
    if not years:
        return "no years"
    if years == list(range(years[0], years[-1] + 1)):
        return f"{years[0]}–{years[-1]}" if len(years) > 1 else str(years[0])
    return ", ".join(map(str, years))


@dataclass(frozen=True)
class LayerFiles:
    """Rasters by layer and year, as resolved on the client; small and picklable for the workers."""

    description: str
    files: dict[str, dict[int, str]] = field(default_factory=dict)

    def path(self, layer: str, year: int) -> str:
        try:
            return self.files[layer][year]
        except KeyError:
            have = year_span(list(self.files.get(layer, {})))
            raise SourceError(f"source {self.description}: no '{layer}' raster for {year} "
                              f"(it has {have})") from None

    def years(self, layer: str) -> list[int]:
        return sorted(self.files.get(layer, {}))
