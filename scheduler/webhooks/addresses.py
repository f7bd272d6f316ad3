"""Where webhooks may go: public addresses only, unless the clinic allows its own network.

An admin chooses a webhook's address, but the requests come from the server, from inside the
clinic's network. Unchecked, an address like ``http://169.254.169.254/`` (a cloud's metadata
service) or ``http://127.0.0.1:5432/`` would let anyone with an admin account, or a stolen
one, make the server call what only it can reach (server-side request forgery). So a host
must resolve to public addresses only: checked when the webhook is saved and again at every
delivery, and the delivery connects to the very address that was checked, so a name whose
answer changes in between (DNS rebinding) gets nowhere. ``WEBHOOK_ALLOW_PRIVATE=true`` lifts
the rule for a receiver on the clinic's own network.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

# What to tell an admin whose address is refused.
HOW_TO_ALLOW = (
    "Webhooks go to public addresses only; if the receiver is on the clinic's own network, "
    "the operator can set WEBHOOK_ALLOW_PRIVATE=true."
)

Connector = Callable[..., socket.socket]


class Unreachable(Exception):
    """The host cannot be delivered to: not found, or inside a private network."""


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
        raise Unreachable(f"could not find the host {host} ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def refusal(host: str, addresses: list[str]) -> str | None:
    """Say why ``host`` may not be delivered to, if one of its ``addresses`` is private."""
    private = [address for address in addresses if not is_public(address)]
    if not private:
        return None
    where = host if host == private[0] else f"{host} ({private[0]})"
    return f"{where} is inside a private network, not on the public internet. {HOW_TO_ALLOW}"


def vetted(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Return the addresses to connect to for ``host``, or raise :class:`Unreachable`."""
    addresses = resolve(host, port)
    reason = None if allow_private else refusal(host, addresses)
    if reason:
        raise Unreachable(f"refused: {reason}")
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
