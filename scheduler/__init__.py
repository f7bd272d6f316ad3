"""An appointment scheduler for acupuncture clinics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flask import Flask

from scheduler import config
from scheduler.db import configure_engine, utcnow

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error pages, commands."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(config.from_environment(app.instance_path))
    app.config["CLOCK"] = utcnow
    # How old a staff login is goes by the wall clock, even where tests move CLOCK.
    app.config["SESSION_CLOCK"] = time.time
    if test_config:
        app.config.from_mapping(test_config)
    register_proxy_fix(app)
    register_extensions(app)
    register_write_lock(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    return app


def register_proxy_fix(app: Flask) -> None:
    """Behind ``PROXY_FIX_X_FOR`` proxies, take the client's address from X-Forwarded-For."""
    hops = app.config.get("PROXY_FIX_X_FOR", 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Links are built from BASE_URL, so nothing else is taken from the proxies' headers.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0)  # type: ignore[method-assign]


def register_extensions(app: Flask) -> None:
    """Bind the extensions to ``app`` and tune the database engine."""
    # Import every model so that the metadata and Alembic see the whole schema.
    from scheduler import models  # noqa: F401
    from scheduler.eventlog import init_app as init_event_log
    from scheduler.extensions import csrf, db, login_manager, migrate
    from scheduler.i18n import init_app as init_languages
    from scheduler.ratelimit import init_app as init_rate_limits
    from scheduler.sealing import init_app as init_sealing
    from scheduler.security import init_app as init_security
    from scheduler.staff.auth import init_app as init_auth
    from scheduler.web import apply_body_limit

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), compare_type=True)
    # Before CSRFProtect's check, which reads the body: a calendar upload may be larger.
    app.before_request(apply_body_limit)
    csrf.init_app(app)
    login_manager.init_app(app)
    init_languages(app)
    init_auth()
    init_event_log(app)
    # Its check runs before the write lock's (register_write_lock): a refused request never
    # waits for the lock nor writes.
    init_rate_limits(app)
    init_security(app)
    init_sealing(app)
    with app.app_context():
        configure_engine(db.engine, synchronous=app.config["SQLITE_SYNCHRONOUS"])


def register_write_lock(app: Flask) -> None:
    """Start every request that may write by taking the database's write lock."""
    from flask import request

    from scheduler.db import begin_write
    from scheduler.extensions import db

    @app.before_request
    def _take_write_lock() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        view = app.view_functions.get(request.endpoint or "")
        if not getattr(view, "takes_write_lock_itself", False):
            begin_write(db.session())


def register_blueprints(app: Flask) -> None:
    """Mount the pages and the API."""
    from scheduler.api import staff as _api_staff  # noqa: F401  (its routes join the API)
    from scheduler.api import waitlist as _api_waitlist  # noqa: F401  (its routes join the API)
    from scheduler.api.openapi import blueprint as api_docs
    from scheduler.api.views import blueprint as api
    from scheduler.booking.staff_views import blueprint as bookings
    from scheduler.booking.views import blueprint as booking
    from scheduler.calendars.views import blueprint as calendars
    from scheduler.clinic.setup import blueprint as setup
    from scheduler.clinic.views import blueprint as clinic
    from scheduler.extensions import csrf
    from scheduler.health import blueprint as health
    from scheduler.notifications.views import blueprint as notifications
    from scheduler.patients.views import blueprint as patients
    from scheduler.staff.token_views import blueprint as tokens
    from scheduler.staff.two_factor import blueprint as two_factor
    from scheduler.staff.users import blueprint as users
    from scheduler.staff.views import blueprint as staff
    from scheduler.waitlist.views import blueprint as waitlist
    from scheduler.webhooks.views import blueprint as webhooks

    app.register_blueprint(clinic)
    app.register_blueprint(staff)
    app.register_blueprint(setup)
    app.register_blueprint(bookings)
    app.register_blueprint(users)
    app.register_blueprint(tokens)
    app.register_blueprint(two_factor)
    app.register_blueprint(notifications)
    app.register_blueprint(booking)
    app.register_blueprint(calendars)
    app.register_blueprint(patients)
    app.register_blueprint(waitlist)
    app.register_blueprint(webhooks)
    app.register_blueprint(health)
    # The API takes only JSON bodies, which a cross-site form cannot send, and no cookies.
    csrf.exempt(api)
    app.register_blueprint(api)
    app.register_blueprint(api_docs)


def register_errorhandlers(app: Flask) -> None:
    """Answer errors with a page (or JSON under ``/api/``), never a traceback."""
    from scheduler.errors import init_app

    init_app(app)


def register_template_helpers(app: Flask) -> None:
    """Add the filters templates use to show times in the clinic's zone."""
    from scheduler.templating import init_app

    init_app(app)


def register_commands(app: Flask) -> None:
    """Add the ``flask --app scheduler …`` commands."""
    from scheduler.backup import init_app as init_backup
    from scheduler.calendars.commands import calendar
    from scheduler.demo.commands import demo
    from scheduler.notifications.commands import notifications
    from scheduler.patients.commands import patients
    from scheduler.staff.commands import users

    app.cli.add_command(demo)
    app.cli.add_command(calendar)
    app.cli.add_command(users)
    app.cli.add_command(notifications)
    app.cli.add_command(patients)
    # `db backup`, beside Flask-Migrate's `db` commands (registered with the extensions).
    init_backup(app)
