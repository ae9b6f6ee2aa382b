"""Connect-and-ping checks of a MemoryStore's backend, with a timeout.

Results are :class:`~memstore_operator.status.Check` values; nothing here raises. Messages
name hosts and ports but never a password or a URI (which may carry credentials).

- redis / redisCluster: TCP connect (TLS with the store's CA and client certificate when
  its spec asks for TLS), ``AUTH [username] password`` when a password is set, then
  ``PING`` (RESP), expecting ``+PONG``; a cluster is reachable when any seed node answers.
- mongodb: TCP connect to the first host of the URI that accepts a connection
  (``mongodb+srv://`` URIs need a DNS SRV lookup and are reported as Unknown).
- embedded: the data lives in the pod; always reachable.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from memstore_operator import constants as c
from memstore_operator.model import SecretKeyRef, StoreSpec
from memstore_operator.status import Check


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        raw = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _readline(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        if len(buf) > 4096:
            break
    return buf.strip()


@dataclass(frozen=True)
class RedisTlsFiles:
    """The TLS material the pods mount, as read from the Secrets (PEM text)."""

    verify_hostname: bool = True
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca or None)
        context.check_hostname = self.verify_hostname
        if self.cert and self.key:
            # The ssl module loads a certificate chain from files only.
            with tempfile.TemporaryDirectory() as scratch:
                cert, key = Path(scratch, "tls.crt"), Path(scratch, "tls.key")
                for path, text in ((cert, self.cert), (key, self.key)):
                    path.touch(mode=0o600)
                    path.write_text(text)
                context.load_cert_chain(cert, key)
        return context


def ping_redis(
    host: str,
    port: int,
    password: str | None,
    timeout: float,
    *,
    username: str | None = None,
    tls: RedisTlsFiles | None = None,
) -> Check:
    where = f"{host}:{port}"
    try:
        context = tls.context() if tls is not None else None
    except (ssl.SSLError, ValueError) as exc:
        return Check(False, "InvalidCertificate", f"redis TLS files cannot be loaded: {exc}")
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
            if context is not None:
                sock = stack.enter_context(context.wrap_socket(sock, server_hostname=host))
            sock.settimeout(timeout)
            if password:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                sock.sendall(_resp(*auth))
                reply = _readline(sock)
                if not reply.startswith(b"+OK"):
                    return Check(False, "AuthenticationFailed", f"redis at {where} refused AUTH")
            sock.sendall(_resp("PING"))
            reply = _readline(sock)
    except ssl.SSLError as exc:
        return Check(False, "TLSFailed", f"redis at {where}: {type(exc).__name__}: {exc}")
    except OSError as exc:
        return Check(False, "Unreachable", f"redis at {where}: {type(exc).__name__}: {exc}")
    if reply.startswith(b"+PONG"):
        return Check(True, "Pong", f"redis at {where} answered PING")
    if reply.startswith((b"-NOAUTH", b"-WRONGPASS", b"-ERR invalid password")):
        return Check(False, "AuthenticationFailed", f"redis at {where} needs a valid password")
    return Check(False, "UnexpectedReply", f"redis at {where} did not answer PONG")


def _split_hostport(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [v6]:port
        host, _, rest = item[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = item.rpartition(":")
    if not sep:
        return item, default_port
    return host, int(port)


def mongodb_hosts(uri: str) -> list[tuple[str, int]]:
    """Host list of a ``mongodb://`` URI (credentials, database and options dropped)."""
    rest = uri.split("://", 1)[1]
    hostpart = rest.split("/", 1)[0].split("?", 1)[0]
    hostpart = hostpart.rsplit("@", 1)[-1]
    return [_split_hostport(unquote(h), 27017) for h in hostpart.split(",") if h]


def ping_mongodb(uri: str, timeout: float) -> Check:
    if uri.startswith("mongodb+srv://"):
        return Check(None, "NotChecked", "mongodb+srv URIs are not checked by the operator")
    if not uri.startswith("mongodb://"):
        return Check(False, "InvalidURI", "the MongoDB URI must start with mongodb://")
    try:
        hosts = mongodb_hosts(uri)
    except ValueError:
        return Check(False, "InvalidURI", "the MongoDB URI has an invalid host list")
    errors: list[str] = []
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return Check(True, "Connected", f"mongodb at {host}:{port} accepts connections")
        except OSError as exc:
            errors.append(f"{host}:{port}: {type(exc).__name__}")
    return Check(False, "Unreachable", "mongodb: " + "; ".join(errors or ["no hosts"]))


def check_backend(
    spec: StoreSpec, secrets: dict[str, str], timeout: float, *, secondary: bool = False
) -> Check:
    """``secrets`` maps "secretName/key" to the decoded value. ``secondary``: check the
    spec's secondary backend instead (the spec must name one)."""
    b = spec.secondary_backend if secondary else spec.backend
    if b is None:
        return Check(None, "NotConfigured", "no secondary backend")

    def value(ref: SecretKeyRef | None) -> str | None:
        return secrets.get(f"{ref.name}/{ref.key}") if ref is not None else None

    password = value(b.password_ref)
    access = b.redis_access
    username = access.username if access is not None else None
    username = username or value(b.username_ref)
    tls: RedisTlsFiles | None = None
    if access is not None and access.tls is not None and access.tls.enabled:
        spec_tls = access.tls
        client = spec_tls.client_certificate_secret_ref
        tls = RedisTlsFiles(
            verify_hostname=spec_tls.verify_hostname,
            ca=value(spec_tls.ca_secret_ref),
            cert=secrets.get(f"{client.name}/{c.TLS_CERT_KEY}") if client else None,
            key=secrets.get(f"{client.name}/{c.TLS_KEY_KEY}") if client else None,
        )
    if b.redis is not None:
        return ping_redis(b.redis.host, b.redis.port, password, timeout, username=username, tls=tls)
    if b.redis_cluster is not None:
        last = Check(False, "Unreachable", "no seed node")
        for node in b.redis_cluster.nodes:
            host, port = _split_hostport(node, 6379)
            last = ping_redis(host, port, password, timeout, username=username, tls=tls)
            if last.ok:
                return last
        return last
    if b.mongodb is not None:
        ref = b.mongodb.uri_secret_ref
        return ping_mongodb(secrets.get(f"{ref.name}/{ref.key}", ""), timeout)
    return Check(True, "Embedded", "the embedded backend runs inside the pod")
