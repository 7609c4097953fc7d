"""Real HTTP servers on 127.0.0.1 for download tests: files, misbehaviour, and a fake Google Drive.

`serve()` runs a plain HTTP server. `serve_drive()` runs an HTTPS proxy in front of the same handler,
with a test certificate for Google's host names: with `HTTPS_PROXY` and `REQUESTS_CA_BUNDLE` pointing
at it, gdown's own Drive logic (confirmation pages, error pages) talks to pages this module serves.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional, Union

CUT = 300_000  # bytes a broken or held response delivers, by default (`ServerState.cut`)
#: Seconds a held response waits for its release (`ServerState.hold`) before the server gives up on it. It gave up
#: quietly, sending the rest: a test that waited for bytes only the rest brings passed, a minute late, on the race
#: that followed (forty-fourth session's audit). Now the response is dropped and the server's block fails, naming it.
HOLD_LIMIT_S = 60
#: What a machine without internet gets: a URL whose host name does not resolve (.invalid never does).
OFFLINE_URL = "http://toonlib-test.invalid/tiny.pkl"
DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")


@dataclasses.dataclass
class Reply:
    """A response with its own status and headers (files are plain bytes, served as 200 with Range support); with
    `ranges`, a file served as plain bytes are, with these headers too (as Google Drive serves a file to gdown)."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    ranges: bool = False


@dataclasses.dataclass
class ServerState:
    """What the test server serves and how it misbehaves; `log` records (path, headers) per request."""

    base: str
    files: dict[str, Union[bytes, Reply]]
    log: list[tuple[str, dict[str, str]]] = dataclasses.field(default_factory=list)
    fail_first: int = 0  # answer this many requests with `failure`, else with 503
    failure: Optional[Reply] = None
    cut_responses: int = 0  # announce the full length but drop the connection after `cut` bytes, this many times
    ranges: bool = True  # honour Range requests
    accept_ranges: bool = True  # and say so (Accept-Ranges: bytes), where `ranges`, as most servers do
    etags: bool = True  # send an ETag (the body's hash) with files, and honour If-Range
    hold: Optional[threading.Event] = None  # send `cut` bytes of a file, then wait for this event to send the rest
    cut: int = CUT  # bytes a cut or held response delivers (gdown reads 512 KB at a time, and drops a broken read)
    dies: bool = False  # a server that dies mid-file: no byte of a file past its `cut`th is sent (the full length
    # announced, then the connection dropped); where `ranges`, each resume gets no further, else each try starts over
    streaming: threading.Event = dataclasses.field(default_factory=threading.Event)  # set once a body is half sent
    unreleased: list[str] = dataclasses.field(default_factory=list)  # paths whose hold ran out (`HOLD_LIMIT_S`)

    def paths(self) -> list[str]:
        return [path for path, _ in self.log]


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.log.append((self.path, dict(self.headers)))
        if state.unreleased:  # a hold ran out: the test is failing, so nothing more is served, to end it soon
            self.send_error(500, "a held response was never released")
            return
        if state.fail_first > 0:
            state.fail_first -= 1
            if state.failure is None:
                self.send_error(503)
            else:
                self._reply(state.failure)
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if isinstance(body, Reply) and not body.ranges:
            self._reply(body)
            return
        headers = body.headers if isinstance(body, Reply) else {}
        body = body.body if isinstance(body, Reply) else body
        status, start = 200, 0
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if match and state.ranges and not (state.etags and if_range is not None and if_range != etag):
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        chunk = body[start:]
        self.send_response(status)
        headers = {"Content-Type": "text/html" if body.startswith(b"<") else "application/octet-stream", **headers}
        for key, value in {**headers, "Content-Length": str(len(chunk))}.items():
            self.send_header(key, value)
        if state.etags:
            self.send_header("ETag", etag)
        if state.ranges and state.accept_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if state.dies:
            self.wfile.write(chunk[:max(0, state.cut - start)])
            return
        if state.cut_responses > 0:
            state.cut_responses -= 1
            self.wfile.write(chunk[:state.cut])
            return
        hold = state.hold  # read once: a test may set `state.hold` to None while this response waits
        if hold is not None:
            self.wfile.write(chunk[:state.cut])
            self.wfile.flush()
            state.streaming.set()
            if not hold.wait(timeout=HOLD_LIMIT_S):
                state.unreleased.append(self.path)  # said when the server's block ends (`_check_released`)
                return  # the connection dropped: the rest never comes
            chunk = chunk[state.cut:]
        self.wfile.write(chunk)

    def do_CONNECT(self) -> None:
        """This server as an https:// URL's proxy: the tunnel to `host:443` is asked for as that path (`fail_first` and
        `failure` answer it: a 407 is a proxy asking for a login)."""
        self.do_GET()

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for key, value in {"Content-Length": str(len(reply.body)), **reply.headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Clients that go away mid-response (a killed download) are part of the tests: no traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


def _check_released(state: ServerState) -> None:
    """Fail the test whose held response ran out of time: it never released the hold (or waited for more bytes than
    the server sends before it)."""
    if state.unreleased:
        raise AssertionError(f"the test server held {state.unreleased} for {HOLD_LIMIT_S} s and the test never "
                             "released it (state.hold.set()): did it wait for bytes that only the rest of the response "
                             "brings?")


@contextlib.contextmanager
def serve(files: dict[str, Union[bytes, Reply]]) -> Iterator[ServerState]:
    """A threaded HTTP server on 127.0.0.1 serving `files` (path -> body) until the block ends."""
    httpd = _Server(("127.0.0.1", 0), Handler)
    state = ServerState(base=f"http://127.0.0.1:{httpd.server_address[1]}", files=files)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    _check_released(state)  # only when the block itself passed: a failure of its own is the one to read


class _TunnelHandler(BaseHTTPRequestHandler):
    """An HTTPS proxy that ends every CONNECT tunnel itself: TLS with the test certificate, then `Handler`."""

    def log_message(self, *args) -> None:
        pass

    def do_CONNECT(self) -> None:
        host = self.path.rsplit(":", 1)[0]
        if host not in DRIVE_HOSTS:
            self.send_error(403, f"this test proxy serves only {DRIVE_HOSTS}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        tls = self.server.tls.wrap_socket(self.connection, server_side=True)  # type: ignore[attr-defined]
        Handler(tls, self.client_address, self.server)
        self.close_connection = True


def write_test_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for Google's Drive host names: (certificate PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "toonlib test Drive")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in DRIVE_HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "drive-cert.pem", folder / "drive-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def serve_drive(files: dict[str, Union[bytes, Reply]], folder: Path) -> Iterator[tuple[ServerState, str, Path]]:
    """An HTTPS proxy for Drive's host names serving `files`: (state, proxy URL, CA bundle to trust)."""
    cert, key = write_test_certificate(folder)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    httpd = _Server(("127.0.0.1", 0), _TunnelHandler)
    proxy = f"http://127.0.0.1:{httpd.server_address[1]}"
    state = ServerState(base="https://drive.google.com", files=files)
    httpd.state, httpd.tls = state, tls  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, proxy, cert
    finally:
        if state.hold is not None:
            state.hold.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    _check_released(state)  # only when the block itself passed: a failure of its own is the one to read
