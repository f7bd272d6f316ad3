"""What an app worker holds: libraries only some requests need are loaded by those requests.

A worker's memory is a bench target (docs/performance.md, ≤ 150 MB after 10,000 requests);
zxcvbn's word lists (12 MB) and py_webauthn with what it brings (7 MB) are needed only when a
password is set or a security key used, so a worker that serves neither never loads them.
"""

from __future__ import annotations

import json
import subprocess
import sys

LOADED = """
import json, sys
from scheduler import create_app
app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "test-secret"})
app.test_client().get("/health")
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_by_a_fresh_app() -> set[str]:
    done = subprocess.run(  # noqa: S603 (this interpreter, our own script)
        [sys.executable, "-c", LOADED], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_fresh_worker_loads_neither_the_password_lists_nor_the_security_key_library():
    loaded = loaded_by_a_fresh_app()

    assert "scheduler" in loaded, "the app did not load"
    assert "zxcvbn" not in loaded
    assert "webauthn" not in loaded
