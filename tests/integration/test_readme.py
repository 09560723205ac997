"""The README's examples, command by command, against a real gateway and queue worker."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient

from queue_worker.worker import FeedbackWorker

Client = TestClient[Any, Any]
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curls() -> list[tuple[str, str, Any]]:
    """``(method, path with query, JSON body or None)`` of each curl in the Examples section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Examples") : text.index("## Configuration")]
    block = section.split("```")[1]
    commands = re.split(r"\n(?=curl )", block.replace("\\\n", " "))
    out = []
    for command in commands:
        command = "\n".join(line for line in command.splitlines() if not line.startswith("#"))
        if not command.strip().startswith("curl"):
            continue
        words = shlex.split(command)
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        url = next(w for w in words[1:] if w.startswith("localhost:5160"))
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        parts = urlsplit("http://" + url)
        out.append((method, parts.path + (f"?{parts.query}" if parts.query else ""), body))
    return out


async def test_readme_examples_work_in_order(client: Client, queue_worker: FeedbackWorker) -> None:
    curls = readme_curls()
    assert len(curls) >= 9
    assert any(path == "/2/streams" and method == "POST" for method, path, _ in curls)
    claimed = ""
    for method, path, body in curls:
        path = path.replace("<stream_id>", claimed)
        if body is not None:
            body = json.loads(json.dumps(body).replace("<stream_id>", claimed))
        resp = await client.request(method, path, json=body)
        assert 200 <= resp.status < 300, (method, path, await resp.text())
        answer = await resp.json()
        if path.endswith("/processing/queue"):
            assert len(answer["streams"]) == 2
            claimed = answer["streams"][0]["stream_id"]
        if path.endswith("/processing/feedback"):
            assert [m["stream_id"] for m in answer["streams"]["modified"]] == [claimed]
        if path.startswith("/1/streams/logs"):
            statuses = [row["status"] for row in answer["logs"]]
            assert statuses[0] == "in_progress"
            assert statuses[-1] == "pending"


def test_readme_stream_types_fit_their_urls() -> None:
    for _, _, body in readme_curls():
        if body and "data" in body:
            kind, reference = body["data"]["type"], body["data"].get("reference", "")
            if reference.startswith("rtsp://"):
                assert kind == "tcp", body
            if kind == "udp":
                assert not reference.startswith(("rtsp://", "http")), body
