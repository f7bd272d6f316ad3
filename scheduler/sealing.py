"""Sealing secrets and health answers at rest: Fernet (AES-128-CBC with HMAC-SHA256) under
keys derived from ``SECRET_KEY`` and its ``SECRET_KEY_FALLBACKS``.

A copy of the database alone (a stolen backup, a leaked dump) then holds no TOTP secret and
no health answer in clear. The newest key seals; every key opens, so ``SECRET_KEY`` can be
rotated: put the old one in ``SECRET_KEY_FALLBACKS`` until ``flask --app scheduler db
reseal`` has sealed everything again under the new one. Lose every key and what was sealed
is lost too: keep ``SECRET_KEY`` with the backups, apart from them.

:class:`SealedText` and :class:`SealedJSON` are column types that seal on the way in and open
on the way out, with the keys of the app in use (or, outside any app, those given to
:func:`use_outside_apps`: a test's own session, a script's).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app, has_app_context
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator

# Each use has a key of its own, derived from the same SECRET_KEY.
TOTP = b"staff totp secret"
HEALTH = b"patient health answers"
PURPOSES = (TOTP, HEALTH)

_outside_keys: tuple[str, ...] = ()


class Unreadable(Exception):
    """A sealed value no key opens: SECRET_KEY changed without its old value as a fallback."""


def keys_of(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys an app's settings give: ``SECRET_KEY`` first, then its fallbacks."""
    return (str(config["SECRET_KEY"]), *(str(k) for k in config.get("SECRET_KEY_FALLBACKS", ())))


@functools.lru_cache(maxsize=32)
def cipher(keys: tuple[str, ...], purpose: bytes) -> MultiFernet:
    """The cipher of ``keys`` for ``purpose``: the first key seals, any key opens."""

    def fernet(key: str) -> Fernet:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            key.encode()
        )
        return Fernet(base64.urlsafe_b64encode(derived))

    return MultiFernet([fernet(key) for key in keys])


def seal(text: str, keys: Sequence[str], purpose: bytes) -> str:
    """Encrypt ``text`` under the first of ``keys``."""
    return cipher(tuple(keys), purpose).encrypt(text.encode()).decode()


def unseal(sealed: str, keys: Sequence[str], purpose: bytes) -> str:
    """Decrypt what :func:`seal` made; raise :class:`Unreadable` if no key opens it."""
    try:
        return cipher(tuple(keys), purpose).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise Unreadable(
            "a sealed value opens with none of the keys: set SECRET_KEY_FALLBACKS to the "
            "SECRET_KEY it was sealed with"
        ) from exc


def reseal(sealed: str, keys: Sequence[str], purpose: bytes) -> str:
    """Seal again under the first of ``keys`` what any of them opens (for a key rotation)."""
    return cipher(tuple(keys), purpose).rotate(sealed.encode()).decode()


def use_outside_apps(keys: Sequence[str]) -> None:
    """Seal and open with ``keys`` where no app context is pushed."""
    global _outside_keys
    _outside_keys = tuple(keys)


def init_app(app: Flask) -> None:
    """Answer a value no key opens with a 503 that says what to set, not a traceback."""
    from scheduler.errors import error_response

    @app.errorhandler(Unreadable)
    def unreadable(error: Unreadable) -> ResponseReturnValue:
        app.logger.error("sealed data unreadable: %s", error)
        return error_response(
            503,
            _(
                "Some of the clinic's records cannot be read with the current SECRET_KEY. "
                "The operator should set SECRET_KEY_FALLBACKS to the key used before."
            ),
        )


def _keys() -> tuple[str, ...]:
    if has_app_context():
        return keys_of(current_app.config)
    if not _outside_keys:
        raise Unreadable("outside an app there is no key to seal or open with")
    return _outside_keys


class SealedText(TypeDecorator[str]):
    """Text stored sealed (see the module); an empty text stays empty, so "" still reads
    as "nothing given" without a key."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or value == "":
            return value
        return seal(value, _keys(), HEALTH)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or value == "":
            return value
        return unseal(value, _keys(), HEALTH)


class SealedJSON(TypeDecorator[Any]):
    """A JSON value stored sealed, as text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return seal(json.dumps(value), _keys(), HEALTH)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(unseal(value, _keys(), HEALTH))
