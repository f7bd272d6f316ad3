"""Sending mail: SMTP against a real server on loopback (aiosmtpd), and the ``.eml`` folder."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from scheduler.config import from_environment
from scheduler.mail import (
    FolderMailer,
    PermanentFailure,
    SMTPMailer,
    SMTPSettings,
    TemporaryFailure,
    mailer_from,
    parse_smtp_url,
)
from tests.smtp_server import Inbox, free_port, smtp_server

SENDER = "clinic@example.org"
PATIENT = "patient@example.org"

# aiosmtpd warns (in its own thread, where ``filterwarnings = error`` turns the warning into
# a failed connection) when AUTH is required on a connection that is not encrypted.
AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)


def letter(
    number: int = 1, *, to: str = PATIENT, body: str = "See you on Monday.\n"
) -> EmailMessage:
    """A small message like the ones the dispatcher sends."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = f"Appointment {number}"
    message["Message-ID"] = f"<notification-{number}.1@clinic.example.org>"
    message.set_content(body)
    return message


@contextmanager
def server(**options: Any) -> Iterator[tuple[Inbox, int]]:
    """``smtp_server`` with a fixed greeting name, so no test waits on a DNS lookup."""
    with smtp_server(server_hostname="mail.test", **options) as running:
        yield running


@contextmanager
def serve_on(port: int, inbox: Inbox, **options: Any) -> Iterator[Inbox]:
    """Run ``inbox`` as the handler of a server on a given port."""
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, server_hostname="mail.test", **options
    )
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def plain(port: int, *, timeout: float = 5.0) -> SMTPMailer:
    """A mailer for plain SMTP to the test server."""
    return SMTPMailer(SMTPSettings("127.0.0.1", port, None, timeout=timeout))


def mailer_for(url: str) -> SMTPMailer:
    """A mailer for ``SMTP_URL=url``, with a timeout short enough for a test."""
    return SMTPMailer(parse_smtp_url(url, timeout=5))


@dataclass
class QuitCountingInbox(Inbox):
    """An inbox that also counts the QUIT commands it hears."""

    quits: int = 0

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """Lets in ``clinic`` with the password ``p@ss`` and nobody else."""
    good = LoginPassword(b"clinic", b"p@ss")
    ok = isinstance(auth_data, LoginPassword) and auth_data == good
    # handled=False: on a failure aiosmtpd answers "535 ... credentials invalid" itself.
    return AuthResult(success=ok, handled=False)


# A server that lets nobody send before logging in (over plain SMTP, to keep the test small).
AUTH_REQUIRED: dict[str, Any] = {
    "authenticator": authenticator,
    "auth_require_tls": False,
    "auth_required": True,
}


# --- TLS: a self-signed certificate for 127.0.0.1, made with the openssl command ---------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    made = Certificate(cert=folder / "cert.pem", key=folder / "key.pem")
    subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(made.key),
            "-out",
            str(made.cert),
        ],
        check=True,
        capture_output=True,
    )
    return made


@pytest.fixture
def trusted(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> Certificate:
    """The certificate, trusted by ``ssl.create_default_context()`` for this test."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    return certificate


# --- parse_smtp_url ------------------------------------------------------------------------


def test_smtp_url_means_port_25_without_encryption() -> None:
    assert parse_smtp_url("smtp://mail.example.org") == SMTPSettings(
        host="mail.example.org", port=25, security=None, username=None, password=None
    )


def test_starttls_url_means_port_587_with_starttls() -> None:
    settings = parse_smtp_url("smtp+starttls://mail.example.org")
    assert (settings.port, settings.security) == (587, "starttls")


def test_smtps_url_means_port_465_with_implicit_tls() -> None:
    settings = parse_smtp_url("smtps://mail.example.org")
    assert (settings.port, settings.security) == (465, "tls")


def test_explicit_port_wins_over_the_default() -> None:
    settings = parse_smtp_url("smtp+starttls://mail.example.org:2525")
    assert (settings.host, settings.port, settings.security) == (
        "mail.example.org",
        2525,
        "starttls",
    )


def test_user_and_url_encoded_password_are_decoded() -> None:
    settings = parse_smtp_url("smtps://clinic%40example.org:p%40ss%3Aword@mail.example.org")
    assert (settings.username, settings.password) == ("clinic@example.org", "p@ss:word")
    assert settings.host == "mail.example.org"


def test_timeout_is_kept_in_the_settings() -> None:
    assert parse_smtp_url("smtp://mail.example.org", timeout=2.5).timeout == 2.5


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_smtp_url("  smtp://mail.example.org:26\n").port == 26


@pytest.mark.parametrize(
    "url", ["http://mail.example.org", "smtp+ssl://mail.example.org", "mail.example.org"]
)
def test_wrong_scheme_is_refused_with_the_schemes_that_work(url: str) -> None:
    with pytest.raises(ValueError, match=r"must start with smtp://, smtp\+starttls:// or smtps://"):
        parse_smtp_url(url)


@pytest.mark.parametrize("url", ["smtp://", "smtp://:25", "smtps://clinic:secret@"])
def test_url_without_a_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="has no host name"):
        parse_smtp_url(url)


@pytest.mark.parametrize("port", ["25a", "70000", "0"])
def test_a_port_that_is_not_one_to_65535_is_refused_saying_so(port: str) -> None:
    url = f"smtp://mail.example.org:{port}"
    with pytest.raises(ValueError, match=re.escape(f"needs a port from 1 to 65535: '{url}'")):
        parse_smtp_url(url)


def test_an_smtp_url_error_never_shows_the_password() -> None:
    with pytest.raises(ValueError, match="port") as refused:
        parse_smtp_url("smtp://clinic:s3cret@mail.example.org:25x")
    assert "s3cret" not in str(refused.value)
    assert "smtp://clinic:***@mail.example.org:25x" in str(refused.value)


# --- SMTPMailer over plain SMTP ------------------------------------------------------------


def test_message_arrives_intact() -> None:
    body = "Rendez-vous confirmé à 10 h.\n.A line that starts with a dot.\nThanks!\n"
    sent = letter(7, body=body)
    sent.replace_header("Subject", "Votre rendez-vous — lundi")
    with server() as (inbox, port), plain(port) as mailer:
        mailer.send(sent)
    (received,) = inbox.received
    assert (received.mail_from, received.rcpt_tos) == (SENDER, [PATIENT])
    message = received.message
    for header in ("From", "To", "Subject", "Message-ID"):
        assert message[header] == sent[header], header
    assert message.get_content().replace("\r\n", "\n") == body


def test_one_connection_serves_a_whole_batch() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        for number in range(1, 4):
            mailer.send(letter(number))
    assert inbox.connections == 1
    assert [m["Subject"] for m in inbox.messages()] == [
        "Appointment 1",
        "Appointment 2",
        "Appointment 3",
    ]


def test_close_says_quit_to_the_server() -> None:
    port = free_port()
    with serve_on(port, QuitCountingInbox()) as inbox:
        assert isinstance(inbox, QuitCountingInbox)
        mailer = plain(port)
        mailer.send(letter())
        assert inbox.quits == 0
        mailer.close()
        assert inbox.quits == 1
        mailer.close()  # a second close has nothing left to say
        assert inbox.quits == 1


def test_leaving_the_with_block_closes_the_connection() -> None:
    port = free_port()
    with serve_on(port, QuitCountingInbox()) as inbox:
        assert isinstance(inbox, QuitCountingInbox)
        with plain(port) as mailer:
            mailer.send(letter())
        assert inbox.quits == 1
        assert len(inbox.received) == 1


def test_close_without_sending_does_not_connect() -> None:
    with server() as (inbox, port):
        plain(port).close()
        with plain(port):
            pass
    assert inbox.connections == 0


# --- login -----------------------------------------------------------------------------------


@AUTH_WITHOUT_TLS
def test_login_with_the_credentials_from_the_url() -> None:
    with (
        server(**AUTH_REQUIRED) as (inbox, port),
        mailer_for(f"smtp://clinic:p%40ss@127.0.0.1:{port}") as mailer,
    ):
        mailer.send(letter())
    assert len(inbox.received) == 1


@AUTH_WITHOUT_TLS
def test_wrong_credentials_are_a_temporary_failure() -> None:
    with (
        server(**AUTH_REQUIRED) as (inbox, port),
        mailer_for(f"smtp://clinic:wrong@127.0.0.1:{port}") as mailer,
        pytest.raises(TemporaryFailure, match=r"535 5\.7\.8 Authentication credentials invalid"),
    ):
        mailer.send(letter())
    assert inbox.received == []


@AUTH_WITHOUT_TLS
def test_missing_credentials_are_a_temporary_failure() -> None:
    with (
        server(**AUTH_REQUIRED) as (inbox, port),
        plain(port) as mailer,
        pytest.raises(TemporaryFailure, match="530"),
    ):
        mailer.send(letter())
    assert inbox.received == []


# --- TLS -------------------------------------------------------------------------------------


def test_starttls_url_encrypts_before_sending(trusted: Certificate) -> None:
    # require_starttls: the server refuses MAIL FROM on a connection that is not encrypted.
    tls = {"tls_context": trusted.server_context(), "require_starttls": True}
    with (
        server(**tls) as (inbox, port),
        mailer_for(f"smtp+starttls://127.0.0.1:{port}") as mailer,
    ):
        mailer.send(letter())
    assert [m["Subject"] for m in inbox.messages()] == ["Appointment 1"]


def test_smtps_url_speaks_tls_from_the_first_byte(trusted: Certificate) -> None:
    with (
        server(ssl_context=trusted.server_context()) as (inbox, port),
        mailer_for(f"smtps://127.0.0.1:{port}") as mailer,
    ):
        mailer.send(letter())
    assert [m["Subject"] for m in inbox.messages()] == ["Appointment 1"]


def test_plain_smtp_to_a_server_that_requires_starttls_is_a_temporary_failure(
    trusted: Certificate,
) -> None:
    tls = {"tls_context": trusted.server_context(), "require_starttls": True}
    with (
        server(**tls) as (inbox, port),
        plain(port) as mailer,
        pytest.raises(TemporaryFailure, match="530"),
    ):
        mailer.send(letter())
    assert inbox.received == []


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_untrusted_certificate_is_a_temporary_failure(
    scheme: str, certificate: Certificate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    context = certificate.server_context()
    options = {"ssl_context": context} if scheme == "smtps" else {"tls_context": context}
    with (
        server(**options) as (inbox, port),
        mailer_for(f"{scheme}://127.0.0.1:{port}") as mailer,
        pytest.raises(TemporaryFailure, match="certificate verify failed"),
    ):
        mailer.send(letter())
    assert inbox.received == []


# --- what the server can say no with ---------------------------------------------------------


def test_421_to_data_is_a_temporary_failure() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        inbox.data_replies.append("421 4.3.2 Service shutting down")
        with pytest.raises(TemporaryFailure, match=r"421 4\.3\.2 Service shutting down"):
            mailer.send(letter())
    assert inbox.received == []


def test_dropped_connection_is_a_temporary_failure_and_the_next_send_reconnects() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        inbox.data_replies.append("drop")
        with pytest.raises(TemporaryFailure, match="closed the connection"):
            mailer.send(letter(1))
        mailer.send(letter(2))
    assert [m["Subject"] for m in inbox.messages()] == ["Appointment 2"]
    assert inbox.connections == 2


def test_recipient_refused_with_550_is_a_permanent_failure_with_the_reply() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        inbox.refuse["gone@example.org"] = "550 5.1.1 No such mailbox here"
        with pytest.raises(PermanentFailure, match=r"550 5\.1\.1 No such mailbox here"):
            mailer.send(letter(to="gone@example.org"))
    assert inbox.received == []


def test_recipient_answered_450_is_a_temporary_failure() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        inbox.refuse["busy@example.org"] = "450 4.2.1 Mailbox busy, try later"
        with pytest.raises(TemporaryFailure, match=r"450 4\.2\.1 Mailbox busy"):
            mailer.send(letter(to="busy@example.org"))
    assert inbox.received == []


def test_554_to_data_is_a_permanent_failure() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        inbox.data_replies.append("554 5.7.1 Message looks like spam")
        with pytest.raises(PermanentFailure, match=r"554 5\.7\.1 Message looks like spam"):
            mailer.send(letter())
    assert inbox.received == []


def test_a_refusal_leaves_the_connection_usable_for_the_next_message() -> None:
    with server() as (inbox, port), plain(port) as mailer:
        inbox.refuse["gone@example.org"] = "550 5.1.1 No such mailbox here"
        with pytest.raises(PermanentFailure):
            mailer.send(letter(1, to="gone@example.org"))
        mailer.send(letter(2))
    assert [m["Subject"] for m in inbox.messages()] == ["Appointment 2"]
    assert inbox.connections == 1


@pytest.mark.parametrize("where", ["DATA", "RCPT"])
def test_the_message_after_a_421_goes_out_on_a_new_connection(where: str) -> None:
    with server() as (inbox, port), plain(port) as mailer:
        if where == "DATA":
            inbox.data_replies.append("421 4.3.2 Service shutting down")
        else:
            inbox.refuse[PATIENT] = "421 4.3.2 Service shutting down"
        with pytest.raises(TemporaryFailure, match="421"):
            mailer.send(letter(1))
        inbox.refuse.clear()
        mailer.send(letter(2))
    assert [m["Subject"] for m in inbox.messages()] == ["Appointment 2"]


def test_nothing_listening_fails_the_rest_of_the_batch_at_once() -> None:
    port = free_port()
    mailer = plain(port)
    with pytest.raises(TemporaryFailure, match="cannot reach the mail server") as first:
        mailer.send(letter(1))
    # A server appears, but this mailer has given up on it for the batch: no new attempt.
    with serve_on(port, Inbox()) as inbox:
        with pytest.raises(TemporaryFailure) as second:
            mailer.send(letter(2))
        mailer.close()
    assert str(second.value) == str(first.value)
    assert inbox.connections == 0
    assert inbox.received == []


def test_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mailer = plain(listener.getsockname()[1], timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="cannot reach the mail server"):
            mailer.send(letter())
        waited = time.monotonic() - started
    assert 0.4 <= waited < 3


# --- FolderMailer ----------------------------------------------------------------------------

EML_NAME = re.compile(r"\d{8}T\d{12}-(?P<local>.+)\.eml")


def test_folder_mailer_writes_one_eml_per_message_into_a_new_folder(tmp_path: Path) -> None:
    folder = tmp_path / "instance" / "mail"
    with FolderMailer(folder) as mailer:
        mailer.send(letter(1))
        mailer.send(letter(2))
    names = sorted(path.name for path in folder.iterdir())
    assert len(names) == 2
    matches = [EML_NAME.fullmatch(name) for name in names]
    assert [m["local"] if m else name for m, name in zip(matches, names, strict=True)] == [
        "notification-1.1",
        "notification-2.1",
    ]


def test_folder_mailer_files_read_back_as_the_message(tmp_path: Path) -> None:
    sent = letter(body="Rendez-vous confirmé.\n")
    FolderMailer(tmp_path).send(sent)
    (path,) = tmp_path.glob("*.eml")
    read = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(read, EmailMessage)
    for header in ("From", "To", "Subject", "Message-ID"):
        assert read[header] == sent[header], header
    assert read.get_content().replace("\r\n", "\n") == "Rendez-vous confirmé.\n"


def test_folder_mailer_leaves_no_partial_files(tmp_path: Path) -> None:
    mailer = FolderMailer(tmp_path)
    for number in range(3):
        mailer.send(letter(number))
    assert [path for path in tmp_path.iterdir() if path.suffix != ".eml"] == []
    assert len(list(tmp_path.iterdir())) == 3


def test_folder_mailer_makes_unsafe_message_ids_into_safe_names(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    sent = letter()
    sent.replace_header("Message-ID", "<../../etc/passwd x@example.org>")
    FolderMailer(folder).send(sent)
    (path,) = folder.iterdir()
    match = EML_NAME.fullmatch(path.name)
    assert match is not None
    assert match["local"] == ".._.._etc_passwd_x"


def test_folder_mailer_names_a_message_without_message_id_message(tmp_path: Path) -> None:
    sent = letter()
    del sent["Message-ID"]
    FolderMailer(tmp_path).send(sent)
    (path,) = tmp_path.iterdir()
    match = EML_NAME.fullmatch(path.name)
    assert match is not None
    assert match["local"] == "message"


def test_folder_that_cannot_be_created_is_a_temporary_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    with pytest.raises(TemporaryFailure, match="cannot write to the mail folder"):
        FolderMailer(blocker / "mail").send(letter())


# --- mailer_from -----------------------------------------------------------------------------


def test_without_smtp_url_mail_goes_to_the_instance_mail_folder(tmp_path: Path) -> None:
    mailer = mailer_from({"SMTP_URL": ""}, str(tmp_path))
    assert isinstance(mailer, FolderMailer)
    assert mailer.folder == tmp_path / "mail"


def test_mail_folder_setting_chooses_the_folder(tmp_path: Path) -> None:
    mailer = mailer_from({"MAIL_FOLDER": str(tmp_path / "outbox")}, str(tmp_path / "instance"))
    assert isinstance(mailer, FolderMailer)
    assert mailer.folder == tmp_path / "outbox"


def test_mail_folder_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_FOLDER", str(tmp_path / "outbox"))
    monkeypatch.setenv("SECRET_KEY", "not written to a file")
    monkeypatch.delenv("SMTP_URL", raising=False)
    settings = from_environment(str(tmp_path / "instance"))
    mailer = mailer_from(settings, str(tmp_path / "instance"))
    assert isinstance(mailer, FolderMailer)
    assert mailer.folder == tmp_path / "outbox"


def test_smtp_url_gives_an_smtp_mailer_with_the_timeout(tmp_path: Path) -> None:
    config: dict[str, object] = {
        "SMTP_URL": "smtp+starttls://clinic:p%40ss@mail.example.org",
        "SMTP_TIMEOUT": 7,
    }
    mailer = mailer_from(config, str(tmp_path))
    assert isinstance(mailer, SMTPMailer)
    assert mailer.settings == SMTPSettings(
        "mail.example.org", 587, "starttls", "clinic", "p@ss", timeout=7.0
    )


def test_bad_smtp_url_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        mailer_from({"SMTP_URL": "smtp://mail.example.org:twenty-five"}, str(tmp_path))
