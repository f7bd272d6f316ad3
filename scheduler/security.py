"""Security headers on every response: a strict content security policy, no sniffing, no
referrer to other sites, HSTS over https, and nothing private left in caches.

Flask-Talisman writes the policy headers; this module chooses them and adds what Talisman
cannot decide per response (HSTS from ``BASE_URL``, ``Cache-Control``). Pages keep every
script and style in ``static/`` so the policy needs no ``'unsafe-inline'``; the one exception,
patient mail shown in the staff area, is its own sandboxed document (:data:`email_document`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from flask_talisman import DENY, SAMEORIGIN, Talisman

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

# Other sites get no Referer at all, so no secret in a URL (booking and waitlist tokens, feed
# URLs) and not even the fact that a visitor came from a clinic can leak through a link. Our own
# pages keep it: Flask-WTF refuses a form posted over https without a same-site Referer, so with
# "no-referrer" every form on the token pages (cancel, reschedule, intake, waitlist) would fail.
REFERRER_POLICY = "same-origin"

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


def _transport_and_caching(response: Response) -> Response:
    if request.is_secure or current_app.config["BASE_URL"].startswith("https://"):
        response.headers["Strict-Transport-Security"] = HSTS
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
