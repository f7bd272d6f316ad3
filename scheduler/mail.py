"""Sending mail: over SMTP (``SMTP_URL``) or, on a laptop, as ``.eml`` files in a folder.

A mailer sends one :class:`~email.message.EmailMessage` at a time and sorts what goes wrong
into :class:`TemporaryFailure` (try again later: the server is down, busy or answered 4xx) and
:class:`PermanentFailure` (the server refused this message or recipient for good: 5xx).
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

SCHEMES = {"smtp": (25, None), "smtp+starttls": (587, "starttls"), "smtps": (465, "tls")}


class MailError(Exception):
    """A message could not be sent; ``str()`` says why in a line."""


class TemporaryFailure(MailError):
    """Worth trying again later."""


class PermanentFailure(MailError):
    """Refused for good; trying again would get the same answer."""


@dataclass(frozen=True)
class SMTPSettings:
    """Where and how to reach the SMTP server."""

    host: str
    port: int
    security: str | None  # None, "starttls" or "tls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


def parse_smtp_url(url: str, *, timeout: float = 30.0) -> SMTPSettings:
    """Read ``smtp://user:pass@host:port`` (or ``smtp+starttls://``, ``smtps://``).

    Raises ``ValueError`` with a message that says what to fix.
    """
    parts = urlsplit(url.strip())
    shown = repr(_without_password(url.strip()))
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, not {shown}"
        )
    if not parts.hostname:
        raise ValueError(f"SMTP_URL has no host name: {shown}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"SMTP_URL needs a port from 1 to 65535: {shown}") from None
    if port == 0:
        raise ValueError(f"SMTP_URL needs a port from 1 to 65535: {shown}")
    default_port, security = SCHEMES[parts.scheme]
    return SMTPSettings(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
    )


def _without_password(url: str) -> str:
    """Return ``url`` with any password replaced, for messages that may reach a log."""
    return re.sub(r"^([a-z+]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Mailer(AbstractContextManager["Mailer"]):
    """Something that sends messages; used as a context manager around a batch."""

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` or raise :class:`TemporaryFailure` or :class:`PermanentFailure`."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of whatever the batch held (nothing, unless a subclass says otherwise)."""

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


class SMTPMailer(Mailer):
    """Sends over one SMTP connection, opened on the first message and reused for the batch.

    After a failure to connect, the rest of the batch fails at once with the same reason
    instead of waiting for the same timeout again.
    """

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self._connection: smtplib.SMTP | None = None
        self._down: str | None = None

    def close(self) -> None:
        """Say goodbye to the server, if it is still listening."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        connection: smtplib.SMTP
        if s.security == "tls":
            connection = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
            )
        else:
            connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.security == "starttls":
                connection.starttls(context=ssl.create_default_context())
            if s.username is not None:
                connection.login(s.username, s.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def send(self, message: EmailMessage) -> None:
        """Send ``message``, connecting first if need be."""
        if self._down is not None:
            raise TemporaryFailure(self._down)
        try:
            if self._connection is None:
                try:
                    self._connection = self._connect()
                except smtplib.SMTPAuthenticationError as exc:
                    self._down = f"the mail server refused the login: {_describe(exc)}"
                    raise TemporaryFailure(self._down) from exc
                except (smtplib.SMTPException, OSError) as exc:
                    self._down = f"cannot reach the mail server: {_describe(exc)}"
                    raise TemporaryFailure(self._down) from exc
            self._connection.send_message(message)
        except MailError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: smtplib.SMTPException | OSError) -> MailError:
        """Sort a failed send into temporary or permanent, and forget a closed connection."""
        if self._connection is not None and self._connection.sock is None:
            # smtplib closes the socket itself on a 421 and on a dropped connection.
            self._connection = None
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            replies = [_reply(code, text) for code, text in exc.recipients.values()]
            if all(code >= 500 for code, _ in exc.recipients.values()):
                return PermanentFailure(f"recipient refused: {'; '.join(replies)}")
            return TemporaryFailure(f"recipient deferred: {'; '.join(replies)}")
        if isinstance(exc, smtplib.SMTPDataError):
            reason = f"message refused: {_reply(exc.smtp_code, exc.smtp_error)}"
            if exc.smtp_code >= 500:
                return PermanentFailure(reason)
            return TemporaryFailure(reason)
        # A dropped connection, a 4xx, or a refused sender (a setting to fix, not the
        # patient's fault): keep the message and try again on a new connection.
        self._drop()
        return TemporaryFailure(_describe(exc))

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        detail = str(exc).removeprefix("Connection unexpectedly closed").strip(": ")
        return "the mail server closed the connection" + (f" ({detail})" if detail else "")
    return str(exc) or type(exc).__name__


# What FolderMailer names its files: when written, then the Message-ID's local part.
EML_NAME = re.compile(r"[0-9T]{21}-[A-Za-z0-9._-]{1,100}\.eml")


def mail_folder(config: Mapping[str, object], instance_path: str) -> Path:
    """Return where mail is written without SMTP: ``MAIL_FOLDER``, else ``instance/mail``."""
    configured = config.get("MAIL_FOLDER")
    return Path(str(configured)) if configured else Path(instance_path) / "mail"


class FolderMailer(Mailer):
    """Writes each message as an ``.eml`` file, for a laptop without a mail server."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        """Write ``message`` to the folder; the file appears whole or not at all."""
        # Named by when it was written and its Message-ID, so a listing reads in order.
        local_part = str(message["Message-ID"] or "message").strip("<>").split("@")[0]
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", local_part)[:100]
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{safe}"
        try:
            # Patient mail: readable by the app's own user only (docs/security.md 8.1.2).
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = self.folder / f".{name}.eml.part"
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(message.as_bytes(policy=policy.SMTP))
            os.replace(partial, self.folder / f"{name}.eml")
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to the mail folder {self.folder}: {exc}") from exc


def mailer_from(config: Mapping[str, object], instance_path: str) -> Mailer:
    """Return the mailer the settings ask for: SMTP, or the folder ``instance/mail``."""
    url = str(config.get("SMTP_URL") or "")
    if url:
        timeout = float(config.get("SMTP_TIMEOUT") or 30)  # type: ignore[arg-type]
        return SMTPMailer(parse_smtp_url(url, timeout=timeout))
    return FolderMailer(mail_folder(config, instance_path))
