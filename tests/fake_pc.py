"""Planetary Computer's two services as local HTTP servers, each checking what it is sent.

- `SasService`: the SAS token endpoint (`GET {sas_url}/{account}/{container}`, as `planetary_computer`
  asks it), answering `{"msft:expiry": ..., "token": ...}` with a fresh token per container, recording
  every request, and refusing (HTTP 403, as for a bad subscription key) when told to.
- `BlobStorage`: Azure Blob Storage for `https://{account}.blob.core.windows.net/{container}/{path}`,
  reached through an HTTPS proxy (GDAL's `GDAL_HTTPS_PROXY`): curl tunnels with CONNECT to the blob host,
  the proxy ends TLS itself (a throw-away certificate; GDAL is told `GDAL_HTTP_UNSAFESSL`) and serves the
  files under `root/{account}/{container}/{path}` with byte ranges, as Azure does: only when the query
  string is the token the SAS service issued for that account and container. No token: 409
  PublicAccessNotPermitted (what Azure answers unsigned requests of Planetary Computer's accounts); any
  other token: 403 AuthenticationFailed. So the signed href travels whole, host and all, from the
  catalog through pystac, odc-stac and GDAL to a server that checks it.
"""

from __future__ import annotations

import datetime as dt
import http.server
import secrets
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

BLOB = ".blob.core.windows.net"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler, owner) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner


def _start(server: _Server) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class SasService:
    """The SAS token endpoint: `url` is what `planetary_computer.settings.Settings.sas_url` should be."""

    def __init__(self) -> None:
        self.tokens: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []  # (account, container) of each token request
        self.refuse = False
        self._server = _Server(_SasHandler, self)
        self.url = _start(self._server) + "/api/sas/v1/token"

    def issue(self, account: str, container: str) -> str:
        token = (f"st={dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}&se=2099-01-01T00%3A00%3A00Z&sp=rl&sv=2021-06-08"
                 f"&sr=c&skoid={secrets.token_hex(4)}&sig={secrets.token_urlsafe(24)}")
        self.tokens[(account, container)] = token
        return token

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _SasHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        owner: SasService = self.server.owner
        parts = urlsplit(self.path).path.split("/")
        if parts[:5] != ["", "api", "sas", "v1", "token"] or len(parts) != 7 or not all(parts[5:]):
            self._answer(404, b'{"detail": "not found"}')
            return
        account, container = parts[5:]
        owner.requests.append((account, container))
        if owner.refuse:
            self._answer(403, b'{"detail": "Access denied due to invalid subscription key."}')
            return
        body = (f'{{"msft:expiry": "2099-01-01T00:00:00Z", "token": "{owner.issue(account, container)}"}}').encode()
        self._answer(200, body)

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _certificate(folder: Path) -> ssl.SSLContext:
    """A TLS server context with a throw-away self-signed certificate for *.blob.core.windows.net."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    f"/CN=*{BLOB}", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class BlobStorage:
    """Blob storage behind an HTTPS proxy: give GDAL `env()` and it reaches the blob hosts here."""

    def __init__(self, root: Path, sas: SasService, scratch: Path) -> None:
        self.root, self.sas = Path(root), sas
        self.tls = _certificate(scratch)
        self.served: list[tuple[str, str, int]] = []  # (host, path without query, status)
        self._server = _Server(_ProxyHandler, self)
        self.proxy = _start(self._server)

    def env(self) -> dict[str, str]:
        """GDAL configuration that routes https through this proxy (curl cannot verify its certificate)."""
        # No directory listings (odc-stac asks the same): Azure has no folders to list, and GDAL's listing
        # request over a reused tunnel stalls this server.
        return {"GDAL_HTTPS_PROXY": self.proxy, "GDAL_HTTP_UNSAFESSL": "YES", "GDAL_HTTP_MAX_RETRY": "0",
                "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep the tunnel open for the ranged GETs that follow
    timeout = 20  # a stalled client fails its read instead of holding a test
    host: str | None = None

    def log_message(self, *args) -> None:
        pass

    def do_CONNECT(self) -> None:  # noqa: N802
        host, _, port = self.path.partition(":")
        if not host.endswith(BLOB) or port != "443":
            self.send_error(502, f"this proxy reaches blob storage only, not {self.path}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        conn = self.server.owner.tls.wrap_socket(self.connection, server_side=True)
        self.connection, self.host = conn, host
        self.rfile = conn.makefile("rb", -1)
        self.wfile = conn.makefile("wb")  # buffered: it sends all of a body over TLS (SocketIO may not)
        self.close_connection = False

    def do_HEAD(self) -> None:  # noqa: N802
        self._blob(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._blob(body=True)

    def _blob(self, body: bool) -> None:
        storage: BlobStorage = self.server.owner
        if self.host is None:  # plain http: Azure's accounts here are https only
            self._answer(400, b"https only", body)
            return
        url = urlsplit(self.path)
        account = self.host[: -len(BLOB)]
        container, _, name = unquote(url.path).lstrip("/").partition("/")
        status = self._status(storage, account, container, url.query)
        path = storage.root / account / container / name
        if status == 200 and not (path.is_file() and storage.root.resolve() in path.resolve().parents):
            status = 404
        storage.served.append((self.host, url.path, status))
        if status != 200:
            reason = {404: "BlobNotFound", 403: "AuthenticationFailed", 409: "PublicAccessNotPermitted"}[status]
            self._answer(status, f"<Error><Code>{reason}</Code></Error>".encode(), body)
            return
        data = path.read_bytes()
        first, last, code = 0, len(data) - 1, 200
        if (wanted := self.headers.get("Range")) and wanted.startswith("bytes="):
            lo, _, hi = wanted[6:].partition("-")
            first, last, code = int(lo), min(int(hi) if hi else len(data) - 1, len(data) - 1), 206
        chunk = data[first:last + 1]
        self.send_response(code)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if body:
            self.wfile.write(chunk)

    @staticmethod
    def _status(storage: BlobStorage, account: str, container: str, query: str) -> int:
        if not query:
            return 409
        issued = storage.sas.tokens.get((account, container))
        if issued is None or parse_qs(query) != parse_qs(issued):
            return 403
        return 200

    def _answer(self, code: int, text: bytes, body: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)
