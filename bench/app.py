"""The app the benchmarks serve: the real one, plus a floor endpoint and the bench's commands.

The floor (``GET /bench/floor/<id>``) reads one booking by primary key and answers a few of
its fields as JSON: the least any request through the same app, hooks and server settings can
cost. It exists only here, never in production. Serve it with
``gunicorn 'bench.app:create_app()'``; ``flask --app bench.app bench …`` runs the commands.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, jsonify
from flask.typing import ResponseReturnValue

from scheduler import create_app as create_scheduler_app
from scheduler.booking.models import Booking
from scheduler.extensions import db

floor = Blueprint("bench", __name__, url_prefix="/bench")


@floor.get("/floor/<int:booking_id>")
def read_one(booking_id: int) -> ResponseReturnValue:
    """Answer one booking's id, start and status, read by primary key."""
    booking = db.session.get(Booking, booking_id)
    if booking is None:
        abort(404)
    return jsonify(id=booking.id, start=booking.start_at.isoformat(), status=booking.status.value)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the scheduler's app with the floor endpoint and the ``bench`` commands."""
    from bench.commands import bench

    app = create_scheduler_app(test_config)
    app.register_blueprint(floor)
    app.cli.add_command(bench)
    return app
