"""POST to a URL a user gave us without letting it reach inside our network (SSRF guard).

The URL is parsed once, by urllib3's parser (the one the HTTP client uses), and refused unless it
is written plainly: no user name or password, no backslash, space or control character, no
fragment, a host that is a DNS name, a dotted IPv4 or a bracketed IPv6 in canonical form (never
``2130706433``, ``0x7f.1``, ``127.1`` or a trailing dot), and the string the parser would write
back. The host is resolved ONCE, every answer must be a public address, and the connection is
made to a checked address itself, with SNI and certificate checks for the host name, so a DNS
answer that changes between check and connection (rebinding) cannot steer it. Redirects are
never followed and nothing is retried. Only port 443 unless ``allowed_ports`` says otherwise.

``Policy.allow_private`` (development and tests only; production refuses the setting) also
allows http, any port and private addresses; parsing, pinning and no-redirects still apply.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

import certifi
import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, LocationParseError
from urllib3.util import parse_url

from utils.exceptions import InvalidInputError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
MAX_URL_LENGTH = 500
DEFAULT_PORTS = {"https": 443, "http": 80}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")  # what inet_aton reads as a number
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x20\x7f-\U0010ffff\\]")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NEVER_PUBLIC = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/96",  # IPv4-compatible (deprecated), unspecified, loopback
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # NAT64 local use (RFC 8215)
        "2001::/32",  # Teredo: the client address is hidden in the last bits
        "fec0::/10",  # site-local (deprecated)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
    )
)


@dataclass(frozen=True)
class Policy:
    """Where a URL may point: ports for public hosts, and whether private ones are allowed."""

    allowed_ports: frozenset[int] = frozenset({443})
    allow_private: bool = False


@dataclass(frozen=True)
class Target:
    """A vetted URL, split into what the connection needs."""

    url: str
    scheme: str
    host: str  # a lower-case DNS name or an IP address (IPv6 without brackets)
    port: int
    request_target: str  # path and query, sent as is
    host_header: str


class DeliveryError(Exception):
    """The POST did not complete (connection, TLS or protocol error); its type says which."""


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (A and AAAA)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def parse(url: str, policy: Policy) -> Target:
    """The vetted target of ``url``, or InvalidInputError saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH or _UNSAFE_CHARACTER.search(url):
        _refuse(f"The URL must be at most {MAX_URL_LENGTH} plain ASCII characters, without spaces or backslashes.")
    try:
        parts = parse_url(url)
    except LocationParseError:
        _refuse("The URL is not valid (check the host name and the port).")
    if parts.scheme not in DEFAULT_PORTS or not parts.host:
        _refuse("The URL must be an http(s) URL with a host name.")
    if parts.scheme != "https" and not policy.allow_private:
        _refuse("The URL must use https.")
    if parts.auth is not None or parts.fragment is not None:
        _refuse("The URL must not contain a user name, a password or a #fragment.")
    host = _canonical_host(parts.host)
    if parts.url != url:
        _refuse(f"Write the URL in its plain form: {parts.url}")
    port = DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
    _check_port(port, policy)
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query is not None else "")
    host_header = parts.host if parts.port is None else f"{parts.host}:{port}"
    return Target(url, parts.scheme, host, port, request_target, host_header)


def resolve(target: Target, policy: Policy, resolver: Resolver = system_resolve) -> tuple[str, ...]:
    """Resolve the host once: the addresses to connect to, in order; every one must be public."""
    answers = (target.host,) if _ip_literal(target.host) is not None else _look_up(target, resolver)
    addresses = [_ip_literal(answer.split("%")[0]) for answer in answers]
    if not policy.allow_private and not all(address is not None and is_public(address) for address in addresses):
        _refuse("The URL must point at a public address.")
    return answers


def post(
    target: Target,
    addresses: tuple[str, ...],
    body: bytes,
    headers: Mapping[str, str],
    timeout: tuple[float, float],
    ca_certs: str | None = None,
) -> int:
    """POST ``body`` to ``target`` over a connection to the first of ``addresses`` that accepts one.

    Returns the status; a redirect is never followed. Certificates are checked against
    ``ca_certs`` (default: certifi's bundle, as requests does).
    """
    timeouts = urllib3.Timeout(connect=timeout[0], read=timeout[1])
    try:
        for address in addresses[:-1]:
            try:
                return _post_once(_pool(target, address, timeouts, ca_certs), target, body, headers)
            except ConnectTimeoutError:  # refused or timed out before anything was sent: try the next
                continue
        return _post_once(_pool(target, addresses[-1], timeouts, ca_certs), target, body, headers)
    except (HTTPError, OSError) as exc:
        raise DeliveryError(type(exc).__name__) from exc


def is_public(address: Address) -> bool:
    """Whether ``address`` is globally reachable, IPv4 embedded in IPv6 included."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if any(address in network for network in _NEVER_PUBLIC):
            return False
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address leads to."""
    if address in _MAPPED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _canonical_host(host: str) -> str:
    """The host without brackets, if it is a canonical DNS name, dotted IPv4 or bracketed IPv6."""
    if host.startswith("["):
        address = _ip_literal(host[1:-1]) if host.endswith("]") else None
        if not isinstance(address, ipaddress.IPv6Address) or address.scope_id or f"[{address.compressed}]" != host:
            _refuse("Write an IPv6 address in brackets in its short form, without a zone.")
        return host[1:-1]
    if isinstance(_ip_literal(host), ipaddress.IPv4Address):
        return host
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels) or _NUMERIC_LABEL.match(labels[-1]):
        _refuse(
            "The host must be a DNS name (labels of letters, digits and hyphens, no trailing dot) or an IP address."
        )
    return host


def _ip_literal(text: str) -> Address | None:
    """``text`` as an IP address in strict notation, or None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _check_port(port: int, policy: Policy) -> None:
    """Refuse a port outside 1-65535, or outside the allowed ports for public hosts."""
    if not 0 < port < 65536:
        _refuse("The URL's port must be between 1 and 65535.")
    if not policy.allow_private and port not in policy.allowed_ports:
        allowed = ", ".join(str(allowed_port) for allowed_port in sorted(policy.allowed_ports))
        _refuse(f"The URL's port must be one of: {allowed}.")


def _look_up(target: Target, resolver: Resolver) -> tuple[str, ...]:
    """The resolver's answers for the target's host name (refused when there is none)."""
    try:
        answers = tuple(resolver(target.host, target.port))
    except (OSError, UnicodeError):
        answers = ()
    if not answers:
        _refuse("The URL's host name does not resolve.")
    return answers


def _post_once(pool: urllib3.HTTPConnectionPool, target: Target, body: bytes, headers: Mapping[str, str]) -> int:
    """One POST over ``pool``, never redirected nor retried; the status."""
    with pool:
        response = pool.urlopen(
            "POST",
            target.request_target,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        return int(response.status)


def _pool(target: Target, address: str, timeout: urllib3.Timeout, ca_certs: str | None) -> urllib3.HTTPConnectionPool:
    """A connection pool to ``address`` that speaks to ``target.host`` (SNI and certificate name)."""
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
    return urllib3.HTTPSConnectionPool(
        address,
        target.port,
        timeout=timeout,
        retries=False,
        maxsize=1,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_certs or certifi.where(),
        server_hostname=target.host,
        assert_hostname=target.host,
    )


def _refuse(message: str) -> NoReturn:
    """Refuse the URL with ``message`` (a 4xx for the API, a flash message on the page)."""
    raise InvalidInputError(message, details={"field": "url"})
