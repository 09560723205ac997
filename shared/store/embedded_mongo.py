"""The embedded MongoDB-wire server (SecantusDB), for running without a MongoDB.

``luna-streams embedded-mongo`` serves it until SIGTERM; ``luna-streams all`` starts it as a
child when ``LUNA_STREAMS_MONGO_URI`` is not set. Data lives in
``LUNA_STREAMS_EMBEDDED_DATA_DIR`` and is kept across runs.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

# re-exported: cli.main catches it from here
from shared.core.errors import EmbeddedUnavailable

log = logging.getLogger("embedded-mongo")


def embedded_uri(port: int) -> str:
    """How every process reaches the embedded server.

    ``retryWrites=false``: SecantusDB keeps the reply of every retryable write for 30
    minutes, up to 10,000 of them, and prunes that record with a scan (and, once full, a
    sort) of all of them on every write; measured here, an insert cost 1.4 ms on a fresh
    server and 21 ms after 10,000 writes, and a soak's feedback p99 grew from 0.4 s to
    2.5 s in its seventh minute. A retried write buys nothing on one local node (there is
    no failover to ride out), and every write of ours is idempotent or guarded, so a
    write that meets a dropped connection fails to its caller, who tries again."""
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"


def serve_embedded(data_dir: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (WiredTiger checkpoint on close)."""
    try:
        from secantus import SecantusDBServer
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "the embedded MongoDB server needs the 'embedded' extra: "
            "pip install 'luna-streams[embedded]', or set LUNA_STREAMS_MONGO_URI"
        ) from exc
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = SecantusDBServer(host="127.0.0.1", port=port, storage_path=data_dir)
    server.start()
    log.info("embedded MongoDB-wire server at %s, data in %s", embedded_uri(port), data_dir)
    try:
        stop.wait()
    finally:
        server.stop()
        log.info("embedded server stopped")
