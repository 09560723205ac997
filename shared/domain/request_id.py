"""``Luna-Request-Id``: ``<10-digit unix time>,<uuid>``, made when the client sent none."""

from __future__ import annotations

import re
import time
import uuid

from shared.domain.models.common import UUID_PATTERN

HEADER = "Luna-Request-Id"
PATTERN = re.compile(r"^[0-9]{10}," + UUID_PATTERN.removeprefix("^"))


def new_request_id() -> str:
    return f"{int(time.time()):010d},{uuid.uuid4()}"


def is_valid_request_id(value: str) -> bool:
    return PATTERN.fullmatch(value) is not None
