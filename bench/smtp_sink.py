"""``python -m bench.smtp_sink PORT DUMP``: accept mail on loopback, for the bench.

It keeps what it accepts until a message to ``dump@bench.invalid`` arrives, then writes what
it kept to ``DUMP`` as JSON lines (sender, recipients, the message in base64), for the baseline
to send the same bytes again, and from then on only counts.
"""

from __future__ import annotations

import base64
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

DUMP_RECIPIENT = "dump@bench.invalid"


class Sink:
    """The handler: keeps messages until asked to dump them."""

    def __init__(self, dump: Path) -> None:
        self.dump = dump
        self.kept: list[dict[str, Any]] | None = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.kept is None:
            return "250 Message accepted"
        if DUMP_RECIPIENT in envelope.rcpt_tos:
            partial = self.dump.with_suffix(".part")
            partial.write_text("".join(json.dumps(item) + "\n" for item in self.kept))
            partial.replace(self.dump)
            self.kept = None
            return "250 Dumped"
        self.kept.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": base64.b64encode(bytes(envelope.content)).decode(),
            }
        )
        return "250 Message accepted"


def main() -> None:
    """Serve until SIGTERM."""
    port, dump = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(Sink(dump), hostname="127.0.0.1", port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
