"""Server-side request forgery: a URL must be http(s) and every address its host resolves to must be public,
checked when the webhook is created and again before each attempt — and the request goes to the address that
was checked (the connection is pinned to it, TLS still verifies the host name), so a DNS answer that changes
in between (rebinding) cannot redirect it. ``PLAIT_WEBHOOK_ALLOW_PRIVATE=true`` lifts the address check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class UnsafeUrl(ValueError):
    """The URL is not http(s), or its host resolves to an address webhooks may not reach."""


# Forms that carry an IPv4 address inside IPv6 through a translator or relay Plait cannot see (the relay or
# tunnel endpoint decides where it goes), and old or special-use ranges ``is_global`` does not know about.
_V6_REFUSED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2002::/16",  # 6to4: wraps an IPv4 address (private ones included), reached through any relay
        "2001::/32",  # Teredo: wraps an IPv4 server address and a NAT's
        "fec0::/10",  # site-local (deprecated, private by design)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): the translator is inside someone's network
        "3fff::/20",  # documentation (RFC 9637)
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: judged by the IPv4 address it wraps
_V4_REFUSED = (ipaddress.IPv4Network("192.88.99.0/24"),)  # 6to4 relay anycast (deprecated)


def address_allowed(address: str) -> bool:
    """Only global unicast addresses: no private, loopback, link-local, multicast, reserved or unspecified —
    and no IPv6 form that wraps an IPv4 address except IPv4-mapped and well-known NAT64, judged by that
    IPv4 address."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif any(ip in net for net in _V6_REFUSED):
            return False
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in net for net in _V4_REFUSED):
        return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def _check_host(host: str) -> None:
    """A host name must be valid DNS (IDNA): labels of 1-63 characters, 253 in all (the resolver failed
    with UnicodeError, a 500, on a longer label)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        raise UnsafeUrl("invalid host name") from None
    if len(encoded.rstrip(b".")) > 253:
        raise UnsafeUrl("invalid host name (longer than 253 characters)")


def check_url_syntax(url: str) -> None:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        # NUL failed the insert on PostgreSQL (a 500); an HTTP client would refuse the others anyway
        raise UnsafeUrl("the URL may not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the URL are not allowed (deliveries are signed instead)")
    if parts.fragment:
        raise UnsafeUrl("the URL may not have a fragment")
    try:
        _ = parts.port
    except ValueError:
        raise UnsafeUrl("invalid port") from None
    _check_host(parts.hostname)


async def resolve_allowed(url: str, allow_private: bool) -> list[str]:
    """The addresses the URL's host resolves to, all of them allowed (else UnsafeUrl)."""
    check_url_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host!r} cannot be resolved") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} cannot be resolved")
    if not allow_private:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise UnsafeUrl(f"the host {host!r} resolves to a non-public address ({refused[0]})")
    return addresses


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL rewritten to connect to ``address``, with the original Host header and TLS server name."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions: dict[str, Any] = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return target, {"Host": host_header}, extensions
