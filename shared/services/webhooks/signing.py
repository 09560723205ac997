"""The signature of a delivery: ``X-Luna-Streams-Signature: t=<unix seconds>,v1=<hex>``,
where ``<hex>`` is the HMAC-SHA256 of ``"<t>.<body>"`` under the webhook's secret.

The timestamp is signed with the body, so a receiver that refuses a ``t`` older than a
few minutes (:data:`TOLERANCE`) cannot be fed a delivery recorded earlier (a replay). A
receiver checks with :func:`verify` or its own few lines (see docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

HEADER: Final = "X-Luna-Streams-Signature"
#: seconds a receiver should accept a signature's time away from its own clock
TOLERANCE: Final = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, body: bytes, header: str, now: float | None = None, tolerance: int = TOLERANCE
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
