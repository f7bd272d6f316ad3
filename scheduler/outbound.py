"""Requests the server makes to addresses people choose: public addresses only, pinned.

Staff choose where webhooks go and which outside calendars are fetched, but the requests come
from the server, from inside the clinic's network. Unchecked, an address like
``http://169.254.169.254/`` (a cloud's metadata service) or ``http://127.0.0.1:5432/`` would
let anyone with a staff account, or a stolen one, make the server call what only it can reach
(server-side request forgery). So a host must resolve to public addresses only: checked when
the address is saved and again before every request, and the request connects to the very
address that was checked (:func:`pinned`, :class:`PinnedHandler`), so a name whose answer
changes in between (DNS rebinding) gets nowhere. A setting per use (``WEBHOOK_ALLOW_PRIVATE``,
``CALENDAR_ALLOW_PRIVATE``) lifts the rule for a server on the clinic's own network.
"""

from __future__ import annotations

import http.client
import socket
import urllib.request
from collections.abc import Callable
from http.client import HTTPResponse
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from flask_babel import gettext

Connector = Callable[..., socket.socket]


class Unreachable(Exception):
    """The host cannot be connected to: not found, or inside a private network."""


def is_public(address: str) -> bool:
    """Tell whether ``address`` (an IP address) is on the public internet."""
    ip: IPv4Address | IPv6Address = ip_address(address.split("%", 1)[0])
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not ip.is_multicast


def literal(host: str) -> str | None:
    """Return ``host`` if it is an IP address rather than a name, else ``None``."""
    try:
        return str(ip_address(host))
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """Return the addresses ``host`` resolves to, or raise :class:`Unreachable`."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unreachable(
            gettext("could not find the host %(host)s (%(reason)s)", host=host, reason=exc)
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def refusal(host: str, addresses: list[str], advice: str) -> str | None:
    """Say why ``host`` may not be connected to, if one of its ``addresses`` is private.

    ``advice`` follows the reason: what the person can do about it.
    """
    private = [address for address in addresses if not is_public(address)]
    if not private:
        return None
    where = host if host == private[0] else f"{host} ({private[0]})"
    return gettext(
        "%(where)s is inside a private network, not on the public internet. %(advice)s",
        where=where,
        advice=advice,
    )


def saved_refusal(host: str, port: int, advice: str) -> str | None:
    """Say why an address being saved is refused, if its host is private.

    A name that cannot be resolved now is let through: it is checked again before each
    request.
    """
    address = literal(host)
    try:
        found = [address] if address else resolve(host, port)
    except Unreachable:
        return None
    return refusal(host, found, advice)


def vetted(host: str, port: int, *, allow_private: bool, advice: str) -> list[str]:
    """Return the addresses to connect to for ``host``, or raise :class:`Unreachable`."""
    addresses = resolve(host, port)
    reason = None if allow_private else refusal(host, addresses, advice)
    if reason:
        raise Unreachable(gettext("refused: %(reason)s", reason=reason))
    return addresses


def pinned(addresses: list[str]) -> Connector:
    """Return a ``socket.create_connection`` that connects to ``addresses`` only, in turn."""

    def create_connection(
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
        **options: object,
    ) -> socket.socket:
        failure: OSError | None = None
        for candidate in addresses:
            try:
                return socket.create_connection((candidate, address[1]), timeout, source_address)
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"no address to connect to for {address[0]}")

    return create_connection


def _pin(connection: http.client.HTTPConnection, connect: Connector) -> Any:
    # http.client opens its socket through this attribute.
    connection._create_connection = connect  # type: ignore[attr-defined]
    return connection


class PinnedHandler(urllib.request.HTTPSHandler):
    """Open http and https connections to the checked addresses, whatever the host name
    resolves to by then; TLS still checks the certificate against the name."""

    http_request = urllib.request.AbstractHTTPHandler.do_request_

    def __init__(self, connect: Connector) -> None:
        super().__init__()
        self.connect = connect

    def _to_checked(self, kind: type[http.client.HTTPConnection]) -> Callable[..., Any]:
        def connection(host: str, **options: Any) -> Any:
            return _pin(kind(host, **options), self.connect)

        return connection

    def http_open(self, req: urllib.request.Request) -> HTTPResponse:
        return self.do_open(self._to_checked(http.client.HTTPConnection), req)

    def https_open(self, req: urllib.request.Request) -> HTTPResponse:
        context = self._context  # type: ignore[attr-defined]
        return self.do_open(self._to_checked(http.client.HTTPSConnection), req, context=context)


def opener(connect: Connector) -> urllib.request.OpenerDirector:
    """Return an opener for http and https only, connecting through ``connect``, using no
    proxy from the environment and following no redirects.

    A redirect is raised as an ``HTTPError`` like any other answer that is not a success, for
    the caller to check where it leads before it follows it, or to refuse it (a POST must not
    turn into a GET somewhere else).
    """
    director = urllib.request.OpenerDirector()
    for handler in (
        PinnedHandler(connect),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        director.add_handler(handler)
    return director
