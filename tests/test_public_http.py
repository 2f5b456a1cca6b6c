"""The SSRF guard's tables (address forms, URL forms) and its pinned TLS connection over loopback."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from utils import public_http
from utils.exceptions import InvalidInputError

STRICT = public_http.Policy()
HOOK_HOST = "hooks.example.test"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 - an address to classify, not one to bind
        ("192.0.2.1", False),  # documentation
        ("198.18.0.1", False),  # benchmarking
        ("224.0.0.1", False),  # multicast
        ("239.255.255.250", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),  # link-local
        ("fc00::1", False),  # unique local
        ("fd12:3456::1", False),
        ("fec0::1", False),  # site-local (deprecated; ipaddress calls it global)
        ("ff02::1", False),  # multicast
        ("ff0e::1", False),  # global-scope multicast
        ("2001:db8::1", False),  # documentation
        ("100::1", False),  # discard
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:93.184.215.14", True),
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated)
        ("::93.184.215.14", False),
        ("::ffff:0:127.0.0.1", False),  # IPv4-translated (SIIT)
        ("::ffff:0:93.184.215.14", False),
        ("64:ff9b::127.0.0.1", False),  # NAT64 well-known prefix
        ("64:ff9b::10.0.0.1", False),
        ("64:ff9b::169.254.169.254", False),
        ("64:ff9b::93.184.215.14", True),
        ("64:ff9b:1::a00:1", False),  # NAT64 local use
        ("64:ff9b:1::5db8:d70e", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2002:5db8:d70e::1", True),  # 6to4 of a public address
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("5f00::1", False),  # SRv6 SIDs
    ],
)
def test_only_globally_reachable_addresses_are_public(address: str, public: bool) -> None:
    assert public_http.is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://example.com",
        "https://hooks.example.com:443/a/b?x=1&y=2",
        "https://93.184.215.14/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://xn--bcher-kva.de/hook",
        "https://a-b.example.co.uk/hook",
    ],
)
def test_plain_public_https_urls_are_accepted(url: str) -> None:
    target = public_http.parse(url, STRICT)
    assert (target.url, target.scheme, target.port) == (url, "https", 443)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1\\@example.com/",
        "https://example.com\\@127.0.0.1/",
        "https://example.com\\\\127.0.0.1/",
        "https://a@b@example.com/",
        "https://@example.com/",
        "https://example.com%2f@127.0.0.1/",
        "https://127.0.0.1%00.example.com/",
        "https://example.com\t/",
        "https://ex\nample.com/",
        "https://bücher.de/",
        "https://example.com:443:443/",
        "https://example.com:+443/",
        "https://example.com:-1/",
        "https://example.com:1e3/",
        "https://example.com:65536/",
        "https://example.com:/",
        "https://example.com:0443/",
        "https:/example.com/",
        "https:example.com/",
        "//example.com/",
        "https://%65xample.com/",
        "https://example.com/%7e",
        "https://127.000.000.001/",
        "https://0x7f.0x0.0x0.0x1/",
        "https://017700000001/",
        "https://1.2.3.4.5/",
        "https://[::1]x/",
        "https://[1::2::3]/",
        "https://[0:0:0:0:0:0:0:1]/",
        "https://[::FFFF:7F00:1]/",
        "https://-bad.example.com/",
        "https://bad-.example.com/",
        "https://under_score.example.com/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "gopher://example.com/",
    ],
)
def test_urls_that_parsers_may_read_differently_are_refused(url: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        public_http.parse(url, STRICT)
    assert refused.value.details == {"field": "url"}


def test_private_addresses_http_and_other_ports_only_when_the_policy_allows_them() -> None:
    loose = public_http.Policy(allow_private=True)
    target = public_http.parse("http://127.0.0.1:8080/hook", loose)
    assert (target.host, target.port, target.host_header) == ("127.0.0.1", 8080, "127.0.0.1:8080")
    assert public_http.resolve(target, loose) == ("127.0.0.1",)
    with pytest.raises(InvalidInputError, match="public address"):
        public_http.resolve(public_http.parse("https://127.0.0.1/hook", STRICT), STRICT)
    ports = public_http.Policy(allowed_ports=frozenset({443, 8443}))
    assert public_http.parse("https://example.com:8443/hook", ports).host_header == "example.com:8443"
    with pytest.raises(InvalidInputError, match="one of: 443, 8443"):
        public_http.parse("https://example.com:8080/hook", ports)


def test_an_ip_literal_is_not_looked_up_and_a_failing_lookup_is_a_clear_refusal() -> None:
    def must_not_resolve(host: str, port: int) -> list[str]:
        raise AssertionError("an IP literal needs no lookup")

    target = public_http.parse("https://93.184.215.14/hook", STRICT)
    assert public_http.resolve(target, STRICT, must_not_resolve) == ("93.184.215.14",)
    named = public_http.parse("https://hooks.example.com/hook", STRICT)
    for failure in (OSError("no such host"), UnicodeError("label too long")):

        def failing(host: str, port: int, failure: Exception = failure) -> list[str]:
            raise failure

        with pytest.raises(InvalidInputError, match="does not resolve"):
            public_http.resolve(named, STRICT, failing)


# ---------------------------------------------------------------------------- pinned TLS over loopback


class TlsReceiver(ThreadingHTTPServer):
    """An HTTPS endpoint on 127.0.0.1 with a certificate for HOOK_HOST; records the SNI names."""

    server_names: list[str | None]
    hosts: list[str | None]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        assert isinstance(self.server, TlsReceiver)
        self.server.hosts.append(self.headers.get("Host"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def _certificate(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    extension: x509.ExtensionType,
) -> x509.Certificate:
    """A certificate for ``key`` valid for a day, signed by ``signer``."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
        .sign(signer, hashes.SHA256())
    )


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for HOOK_HOST signed by it: (ca.pem, leaf.pem, leaf.key)."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", "Test CA", ca_key, ca_key, x509.BasicConstraints(ca=True, path_length=None))
    leaf = _certificate(HOOK_HOST, "Test CA", leaf_key, ca_key, x509.SubjectAlternativeName([x509.DNSName(HOOK_HOST)]))
    paths = (directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    paths[2].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    return paths


@pytest.fixture()
def tls_receiver(tmp_path: Path) -> Iterator[tuple[TlsReceiver, Path]]:
    ca, leaf, key = _certificates(tmp_path)
    server = TlsReceiver(("127.0.0.1", 0), _Handler)
    server.server_names, server.hosts = [], []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf, key)
    context.sni_callback = lambda sock, name, ctx: server.server_names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server, ca
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _target(host: str, port: int) -> public_http.Target:
    policy = public_http.Policy(allowed_ports=frozenset({port}))
    return public_http.parse(f"https://{host}:{port}/hook", policy)


def test_the_pinned_connection_sends_sni_and_checks_the_certificate_for_the_name(
    tls_receiver: tuple[TlsReceiver, Path],
) -> None:
    server, ca = tls_receiver
    port = server.server_address[1]
    status = public_http.post(_target(HOOK_HOST, port), ("127.0.0.1",), b"{}", {}, (2, 2), ca_certs=str(ca))
    assert status == 204
    assert server.server_names == [HOOK_HOST] and server.hosts == [f"{HOOK_HOST}:{port}"]


def test_a_certificate_for_another_name_or_an_unknown_issuer_is_refused(
    tls_receiver: tuple[TlsReceiver, Path],
) -> None:
    server, ca = tls_receiver
    port = server.server_address[1]
    with pytest.raises(public_http.DeliveryError):
        public_http.post(_target("other.example.test", port), ("127.0.0.1",), b"{}", {}, (2, 2), ca_certs=str(ca))
    with pytest.raises(public_http.DeliveryError):
        public_http.post(_target(HOOK_HOST, port), ("127.0.0.1",), b"{}", {}, (2, 2))  # certifi's bundle
    assert server.hosts == [], "no request was sent over an unverified connection"
