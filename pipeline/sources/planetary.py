"""Microsoft Planetary Computer: its STAC API is plain STAC, but its assets live in Azure Blob Storage and
are read only with a SAS token appended to the href, which the `planetary-computer` package fetches (one
per storage account and container, cached while valid) and appends (`planetary_computer.sign_url`).

Signing is a hook of the STAC readers (`StacScenes`, `WorldCoverSource`), not another pipeline: they hand
`sign` to odc-stac as `patch_url`. Which catalogs need it is told by where their assets are
(`*.blob.core.windows.net`) or by the API's host. The token endpoint is the package's own setting
(`PC_SDK_SAS_URL`, `PC_SDK_SUBSCRIPTION_KEY`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from .base import SourceError

PC_HOST = "planetarycomputer.microsoft.com"
PC_STAC = f"https://{PC_HOST}/api/stac/v1"
BLOB_DOMAIN = ".blob.core.windows.net"
TOKEN_RETRIES = 2  # the package's default (10, with backoff) waits minutes for an endpoint that is down
# What blob storage answers a read it does not allow: 409 PublicAccessNotPermitted to an unsigned href of
# Planetary Computer's accounts, 403 AuthenticationFailed to a token it refuses (expired, of another
# container), 401 where a proxy wants credentials.
REFUSED = (401, 403, 409)


def public(text: str) -> str:
    """`text` (an href, a message) with the query strings of its URLs left out: a SAS token is a credential."""
    return re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\"]*", r"\1", text)


def on_blob_storage(href: str) -> bool:
    return urlsplit(href).netloc.endswith(BLOB_DOMAIN)


def is_planetary_api(href: str) -> bool:
    return urlsplit(href).netloc == PC_HOST


def needs_signing(href: str, items: Iterable) -> bool:
    """Whether a catalog's assets need SAS tokens: a Planetary Computer API, or a catalog (static, saved
    from it) whose first item's assets are in Azure Blob Storage."""
    if is_planetary_api(href):
        return True
    first = next(iter(items), None)
    return first is not None and any(on_blob_storage(a.href) for a in first.assets.values())


def _container(href: str) -> tuple[str, str] | None:
    from planetary_computer.utils import parse_blob_url

    parts = urlsplit(href)
    if not parts.netloc.endswith(BLOB_DOMAIN):
        return None
    return parse_blob_url(parts)


def fetch_tokens(hrefs: Iterable[str], where: str) -> None:
    """Fetch (into the package's cache) the SAS token of every storage container among `hrefs`, with few
    retries, before any work; one line (SourceError) naming the container when the endpoint refuses."""
    import requests
    from planetary_computer.sas import get_token
    from planetary_computer.settings import Settings

    for account, container in sorted({c for h in hrefs if (c := _container(h)) is not None}):
        try:
            get_token(account, container, retry_total=TOKEN_RETRIES)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = (" (a subscription key: PC_SDK_SUBSCRIPTION_KEY)" if status in (401, 403) else "")
            raise SourceError(f"{where}: Planetary Computer refused a SAS token for {account}/{container} (HTTP "
                              f"{status} from {public(Settings.get().sas_url)}){hint}") from None
        except (requests.RequestException, ValueError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise SourceError(f"{where}: no SAS token for {account}/{container} from "
                              f"{public(Settings.get().sas_url)} ({reason})") from None


def sign(href: str) -> str:
    """`href` with its container's SAS token (hrefs outside blob storage, or signed already, as they are);
    OSError in one line where no token can be had (on a worker, mid-run)."""
    import planetary_computer
    import requests

    try:
        return planetary_computer.sign_url(href)
    except (requests.RequestException, ValueError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise OSError(f"{public(href)}: no Planetary Computer SAS token to read it ({reason})") from None


def refused_status(exc: BaseException) -> int | None:
    """The HTTP status of a read that blob storage refused, from GDAL's message (or its cause's)."""
    for text in (str(exc), str(exc.__cause__ or "")):
        if match := re.search(r"HTTP response code: (\d{3})", text):
            status = int(match[1])
            return status if status in REFUSED else None
    return None


def refusal(href: str, status: int, *, signed: bool) -> str:
    """Why `href` could not be read, for a status in REFUSED: unsigned, or the token refused."""
    if status == 409 or not signed and "?" not in href:  # no token at all
        return (f"{public(href)}: HTTP {status}, the storage allows no anonymous read: the asset needs signing "
                "with a Planetary Computer SAS token (a catalog of assets on *.blob.core.windows.net is signed "
                "by itself; one on another host is not)")
    return (f"{public(href)}: HTTP {status}, the storage refused the SAS token (expired, or of another "
            "container): sign the asset again (hrefs saved with a token keep it; give the Planetary Computer API "
            "or a catalog without tokens)")


def probe(href: str, *, signed: bool, where: str) -> None:
    """Open one remote asset the way a run reads it (signed where it needs), before any work: one line
    (SourceError) when the storage refuses it or it is no raster."""
    import rasterio
    import rasterio.errors

    try:
        url = sign(href) if signed else href
    except OSError as exc:
        raise SourceError(f"{where}: {exc}") from None
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(url):
            pass
    except rasterio.errors.RasterioIOError as exc:
        if (status := refused_status(exc)) is not None:
            raise SourceError(f"{where}: {refusal(url, status, signed=signed)}") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{where}: {public(href)} cannot be opened ({public(reason)[:300]})") from None


def read_error(exc: BaseException, hrefs: Sequence[str], *, signed: bool) -> OSError | None:
    """A refused read of a remote asset met mid-run (GDAL's error out of odc-stac, which names no file), as
    one line naming the asset, or the assets read; None for any other error."""
    status = refused_status(exc)
    if status is None:
        return None
    named = re.findall(r"https?://[^\s'\"]+", f"{exc} {exc.__cause__ or ''}")
    if named:
        return OSError(refusal(named[0], status, signed=signed))
    more = f" (or another of its {len(hrefs)} assets read)" if len(hrefs) > 1 else ""
    return OSError(refusal(hrefs[0], status, signed=signed).replace(": HTTP", f"{more}: HTTP", 1))
