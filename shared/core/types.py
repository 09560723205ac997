"""Types every layer names: a MongoDB document as the code handles it."""

from __future__ import annotations

from typing import Any

#: a document as read from or written to MongoDB (and the plain dicts the API bodies become)
Doc = dict[str, Any]
