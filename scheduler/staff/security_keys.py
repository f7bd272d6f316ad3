"""Security keys and passkeys (WebAuthn) as the second step of a staff login, beside the code
from the authenticator app (scheduler/staff/totp.py).

A key is added once two-step login is on, so the app and the recovery codes stay the way in
when a key is lost; switching two-step login off removes the keys with it. py_webauthn checks
what the browser answers: the signature, the challenge, the site's origin and the key's sign
count. The site is ``BASE_URL``: its host name is the relying party's id and its scheme and
host the one origin a key answers for, so a key made for the clinic works nowhere else.

Like the other operations these take everything as arguments and only flush.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor
from scheduler.i18n import N_
from scheduler.notifications.models import AccountChange
from scheduler.staff.auth import clear_failures, count_failure, is_locked
from scheduler.staff.models import SecurityKey, User
from scheduler.staff.notices import queue_notice

# How long the browser gives the person to touch their key.
TIMEOUT_MS = 120_000
# At most this many keys on one account (each is a row and a line of the login's options).
MOST_KEYS = 10
NAME_LENGTH = 60
APP_FIRST = N_("Switch two-step login on with an app first; a key is added beside it.")


# py_webauthn (with pyOpenSSL, cbor2 and pyasn1) takes 7 MB that a worker holds for good once
# loaded; it is imported by the functions that use it, so only workers that see a key do.
@cache
def _known_transports() -> dict[str, AuthenticatorTransport]:
    from webauthn.helpers.structs import AuthenticatorTransport

    return {transport.value: transport for transport in AuthenticatorTransport}


class SecurityKeyError(Exception):
    """A security-key step that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Site:
    """Who the keys answer to: the relying party's id (a host name) and its origin."""

    rp_id: str
    origin: str


def site_of(base_url: str) -> Site | None:
    """The relying party ``BASE_URL`` makes, or ``None`` if browsers refuse keys for it: an
    address such as ``http://127.0.0.1:5000`` instead of a name such as ``localhost``."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    # Browsers allow plain http for localhost only.
    if parts.scheme == "http" and host != "localhost" and not host.endswith(".localhost"):
        return None
    return Site(rp_id=host, origin=f"{parts.scheme}://{parts.netloc}")


def user_handle(user: User, secret: str) -> bytes:
    """The opaque id a key keeps for the account: no e-mail address, not guessable."""
    return hmac.new(secret.encode(), f"staff-user:{user.id}".encode(), hashlib.sha256).digest()


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

    known = _known_transports()
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(key.credential_id),
            transports=[known[t] for t in key.transports.split(",") if t in known] or None,
        )
        for key in user.security_keys
    ]


def registration_options(
    user: User, site: Site, *, handle: bytes, clinic_name: str
) -> tuple[str, bytes]:
    """The options for the browser to make a new key for ``user`` (as JSON, the key showing
    ``clinic_name``), and their challenge, to keep until the answer comes. A key already on
    the account is not made again."""
    if not user.has_second_factor:
        raise SecurityKeyError(APP_FIRST)
    if len(user.security_keys) >= MOST_KEYS:
        raise SecurityKeyError(
            N_("An account has at most 10 security keys: remove one you no longer use first.")
        )
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=site.rp_id,
        rp_name=clinic_name,
        user_name=user.email,
        user_id=handle,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.DISCOURAGED,
        ),
        exclude_credentials=_descriptors(user),
    )
    return options_to_json(options), options.challenge


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise SecurityKeyError(N_("Please give the key a name, such as “blue key” or “laptop”."))
    if len(name) > NAME_LENGTH:
        raise SecurityKeyError(N_("Please keep the key's name to 60 characters."))
    return name


def _transports(credential: str) -> str:
    """The transports the browser reported for a new key, the ones we know only."""
    try:
        reported = json.loads(credential).get("response", {}).get("transports", [])
    except (ValueError, AttributeError):
        return ""
    if not isinstance(reported, list):
        return ""
    known = _known_transports()
    return ",".join(t for t in dict.fromkeys(reported) if isinstance(t, str) and t in known)


def add_key(
    session: Session,
    user: User,
    *,
    name: str,
    credential: str,
    challenge: bytes,
    site: Site,
    now: datetime,
) -> SecurityKey:
    """Check the browser's answer to :func:`registration_options` and keep the new key;
    tell the account's owner by mail."""
    name = _clean_name(name)
    if not user.has_second_factor:
        raise SecurityKeyError(APP_FIRST)
    from webauthn import verify_registration_response
    from webauthn.helpers import bytes_to_base64url
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=site.rp_id,
            expected_origin=site.origin,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise SecurityKeyError(
            N_("The key's answer could not be checked. Please try again, with this page open.")
        ) from exc
    credential_id = bytes_to_base64url(verified.credential_id)
    taken = session.scalars(
        select(SecurityKey.id).where(SecurityKey.credential_id == credential_id)
    ).first()
    if taken is not None:
        raise SecurityKeyError(N_("That key is already added to a staff account."))
    key = SecurityKey(
        user=user,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=_transports(credential),
        name=name,
        created_at=now,
    )
    session.add(key)
    queue_notice(session, user, AccountChange.SECURITY_KEY_ADDED, now)
    session.flush()
    return key


def remove_key(session: Session, user: User, key: SecurityKey, now: datetime) -> None:
    """Remove ``key`` from ``user``'s account; tell them by mail."""
    if key.user_id != user.id:
        raise SecurityKeyError(N_("That key is not on your account."))
    session.delete(key)
    queue_notice(session, user, AccountChange.SECURITY_KEY_REMOVED, now)
    session.flush()


def login_options(user: User, site: Site) -> tuple[str, bytes] | None:
    """The options for the browser to ask one of ``user``'s keys to sign (as JSON), and
    their challenge; ``None`` when the account has no key."""
    if not user.security_keys:
        return None
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=site.rp_id,
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(user),
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    return options_to_json(options), options.challenge


def _credential_id(credential: str) -> str | None:
    try:
        raw = json.loads(credential).get("rawId")
    except (ValueError, AttributeError):
        return None
    return raw if isinstance(raw, str) and 0 < len(raw) <= 1400 else None


def key_holds(
    session: Session,
    user: User,
    credential: str,
    *,
    challenge: bytes | None,
    site: Site,
    now: datetime,
) -> SecurityKey | None:
    """Check a signature from one of ``user``'s keys over ``challenge``.

    Return the key, or ``None`` when it was refused: not one of theirs, a wrong signature,
    an old or missing challenge, a sign count that went backwards (a copied key), or the
    account is locked. A refusal counts towards the lock, as a wrong code does.
    """
    if is_locked(user, now) or not user.has_second_factor:
        return None
    credential_id = _credential_id(credential)
    key = next((k for k in user.security_keys if k.credential_id == credential_id), None)
    if key is not None and challenge is not None:
        from webauthn import verify_authentication_response
        from webauthn.helpers.exceptions import WebAuthnException

        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=site.rp_id,
                expected_origin=site.origin,
                credential_public_key=key.public_key,
                credential_current_sign_count=key.sign_count,
            )
        except (WebAuthnException, ValueError, TypeError, KeyError):
            pass
        else:
            key.sign_count = verified.new_sign_count
            key.last_used_at = now
            clear_failures(user)
            return key
    count_failure(user, now)
    return None
