"""A real SMTP server for the tests (aiosmtpd on loopback) that can be told to misbehave."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from threading import Lock
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Inbox:
    """The handler: keeps what it accepts, and answers from a script when told to.

    ``data_replies`` are answered to the next DATA commands instead of accepting them (for
    example ``"421 try later"``); the word ``"drop"`` closes the connection without an answer.
    ``refuse`` maps a recipient to the reply its RCPT TO gets.
    """

    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    lock: Lock = field(default_factory=Lock)

    async def handle_EHLO(  # aiosmtpd calls hooks by these names
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else None
        if reply == "drop":
            server.transport.close()
            return "421 closing"
        if reply is not None:
            return reply
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        """The accepted messages, parsed."""
        with self.lock:
            return [item.message for item in self.received]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server(
    port: int | None = None, inbox: Inbox | None = None, **controller_options: Any
) -> Iterator[tuple[Inbox, int]]:
    """Run an SMTP server on loopback (on ``port``, or a free one); yield its inbox and port."""
    inbox = inbox or Inbox()
    port = port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
