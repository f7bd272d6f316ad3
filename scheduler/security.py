"""Security headers on every response: a strict content security policy, no sniffing, no
referrer to other sites (none at all from a page whose URL holds a secret), HSTS over https,
and nothing private left in caches; and the CSRF check those token pages need.

Flask-Talisman writes the policy headers; this module chooses them and adds what Talisman
cannot decide per response (HSTS from ``BASE_URL``, ``Cache-Control``, the token pages'
``Referrer-Policy``). Pages keep every script and style in ``static/`` so the policy needs no
``'unsafe-inline'``; the one exception, patient mail shown in the staff area, is its own
sandboxed document (:data:`email_document`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import flask_wtf.csrf
from flask import Flask, Response, current_app, g, request
from flask_talisman import DENY, SAMEORIGIN, Talisman
from wtforms import ValidationError

talisman = Talisman()

# Pages load their scripts, styles and images from this site only, and nothing may frame them.
PAGE_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

# Patient mail shown to staff: its inline styles are how mail is written, so this document may
# use them and nothing else: no scripts, no requests, sandboxed even when opened on its own, and
# framed only by the staff pages of this site.
EMAIL_POLICY = {
    "default-src": "'none'",
    "style-src": "'unsafe-inline'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'self'",
    "sandbox": "",
}

# Other sites get no Referer at all, so not even the fact that a visitor came from a clinic
# leaks through a link; the clinic's own pages keep it, as Flask-WTF wants a same-site Referer
# on every form posted over https (WTF_CSRF_SSL_STRICT).
REFERRER_POLICY = "same-origin"
# A page whose URL holds a secret (the booking, waitlist and offer pages, the feeds) sends no
# Referer even to the clinic's own pages: the token would otherwise sit in the Referer of every
# request its page makes, and in whatever logs those. Their forms therefore post without one,
# and :class:`CSRFProtect` checks their CSRF token alone.
CAPABILITY_REFERRER_POLICY = "no-referrer"

# A year, for this host only: the clinic's other subdomains are not the app's to pin to https.
HSTS = "max-age=31536000"

# What is answered under these paths shows patients, their health answers or secrets.
PRIVATE_PATHS = ("/staff/", "/api/v1/staff/")

View = TypeVar("View", bound=Callable[..., Any])


def email_document(view: View) -> View:
    """Serve ``view``'s answer (the HTML of a patient mail) under :data:`EMAIL_POLICY`.

    Put it right under the route decorator, so that it marks the function Flask calls.
    """
    marked: View = talisman(content_security_policy=EMAIL_POLICY, frame_options=SAMEORIGIN)(view)
    return marked


def init_app(app: Flask) -> None:
    """Add the headers to every response ``app`` gives."""
    # Registered before Talisman's, so it runs after it (Flask runs these in reverse order).
    app.after_request(_transport_and_caching)
    talisman.init_app(
        app,
        # `make run` serves plain http on a laptop; a proxy in front redirects to https.
        force_https=False,
        # Set below from BASE_URL as well as the request, which Talisman does not know.
        strict_transport_security=False,
        # The session cookie stays exactly as scheduler.config sets it.
        session_cookie_secure=False,
        session_cookie_http_only=app.config.get("SESSION_COOKIE_HTTPONLY", True),
        session_cookie_samesite=app.config.get("SESSION_COOKIE_SAMESITE"),
        content_security_policy=PAGE_POLICY,
        frame_options=DENY,
        referrer_policy=REFERRER_POLICY,
    )


def holds_secret() -> bool:
    """Whether the request's URL carries a secret token (booking, waitlist, offer, feed)."""
    rule = request.url_rule
    return rule is not None and "token" in rule.arguments


# Flask-WTF ships no type hints, so its class is Any to mypy.
class CSRFProtect(flask_wtf.csrf.CSRFProtect):  # type: ignore[misc]
    """Flask-WTF's CSRF protection, checking the token alone on pages whose URL holds a secret.

    Over https Flask-WTF also refuses a form whose Referer is missing or from another site. The
    token pages send none (:data:`CAPABILITY_REFERRER_POLICY`), so their forms are checked by the
    token they must carry, bound to the session as everywhere; what the Referer check adds, a
    session planted from plain http, cannot happen here, where the session cookie is
    ``__Host-session`` over https. Every other page keeps the Referer check.
    """

    def protect(self, apply_exemptions: bool = False) -> None:
        """Check the current request; refuse it with :class:`~flask_wtf.csrf.CSRFError`."""
        if not holds_secret():
            super().protect(apply_exemptions)
            return
        if apply_exemptions and self._is_exempt():
            return  # the JSON API, which takes no forms
        if request.method not in current_app.config["WTF_CSRF_METHODS"]:
            return
        try:
            flask_wtf.csrf.validate_csrf(self._get_csrf_token())
        except ValidationError as exc:
            self._error_response(exc.args[0])
        g.csrf_valid = True


def _transport_and_caching(response: Response) -> Response:
    if request.is_secure or current_app.config["BASE_URL"].startswith("https://"):
        response.headers["Strict-Transport-Security"] = HSTS
    if holds_secret():
        response.headers["Referrer-Policy"] = CAPABILITY_REFERRER_POLICY
    private = (
        holds_secret()
        or request.path.startswith(PRIVATE_PATHS)
        or request.method not in ("GET", "HEAD")
    )
    # A view that chose its own caching (the calendar feed) keeps it.
    if private and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    # An API answer opened in a browser is saved, never shown as a page (OWASP ASVS 14.4.2).
    if (
        request.path.startswith("/api/")
        and response.mimetype == "application/json"
        and "Content-Disposition" not in response.headers
    ):
        response.headers["Content-Disposition"] = 'attachment; filename="api.json"'
    return response
