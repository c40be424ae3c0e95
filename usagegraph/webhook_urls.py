"""Which URLs a webhook may be sent to: http(s) only, and not into our own network.

A webhook endpoint is a URL an institution admin types and the server then calls: without a
check it is a server-side request forgery waiting to happen (cloud metadata at
169.254.169.254, the database on 127.0.0.1, anything on the private network). So the URL is
refused unless its scheme is http or https, it names a host, and every address the host
resolves to is public (not private, loopback, link-local, multicast, reserved or
unspecified). `USAGEGRAPH_WEBHOOKS_ALLOW_PRIVATE=true` lifts the address rule (tests and
on-premises receivers). The deliverer checks again before each attempt, because a name can
be re-pointed after registration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from usagegraph.errors import invalid

MAX_URL = 2000


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_form(url: str) -> str:
    """The URL's host, once its form is acceptable (INVALID_REQUEST naming what is wrong)."""
    if len(url) > MAX_URL:
        raise invalid(f"url is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise invalid("url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise invalid("url must be an http or https URL")
    if not host:
        raise invalid("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise invalid("url must not carry credentials")
    return host


async def resolve(host: str, port: int | None = None) -> list[str]:
    """Every address `host` resolves to (a literal address: itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise invalid(f"url's host {host!r} does not resolve") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, if webhooks may be sent there (INVALID_REQUEST otherwise)."""
    host = check_form(url)
    if allow_private:
        return url
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        raise invalid("url must not point at a private or loopback address")
    addresses = await resolve(host)
    if not addresses or not all(_public(address) for address in addresses):
        raise invalid("url must not point at a private or loopback address")
    return url
