"""``luna-streams export`` and ``luna-streams import``: streams as JSON lines, from one
deployment (or account) to another, through the HTTP API.

Through the API rather than MongoDB: the same validation, account scope, authentication
(``--token``, or ``LUNA_STREAMS_TOKEN``) and audit as any client, and no database
credentials needed to copy a fleet from staging to production.

``import`` sends the file in parts (:data:`PART_LINES` lines, :data:`PART_BYTES` bytes at
most) and first asks for a dry run of every part: a file with a bad line writes nothing, and
each bad line is printed with its number in the file. The import itself is idempotent, so a
run interrupted midway is simply run again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

import aiohttp

PART_LINES = 1000
PART_BYTES = 2 * 1024 * 1024
NDJSON = "application/x-ndjson"


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"luna-streams {command}",
        description=(
            "Write the streams of an account as JSON lines (their settings and groups, no "
            "status or history)."
            if command == "export"
            else "Make streams from JSON lines as `luna-streams export` writes them: every "
            "line checked first (nothing written when one is bad), idempotent."
        ),
    )
    parser.add_argument("--url", default="http://127.0.0.1:5160", help="the gateway")
    parser.add_argument("--api-version", type=int, choices=(1, 2), default=1)
    parser.add_argument("--account-id", help="the account (import: the one to make them in)")
    parser.add_argument(
        "--token", default=os.environ.get("LUNA_STREAMS_TOKEN"), help="an API token"
    )
    if command == "export":
        parser.add_argument("--group-name", help="only the streams of this group")
        parser.add_argument("-o", "--output", default="-", help="file to write (- : stdout)")
    else:
        parser.add_argument("--status", choices=("pause", "pending"), default="pause")
        parser.add_argument("file", nargs="?", default="-", help="file to read (- : stdin)")
    return parser


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def export(args: argparse.Namespace, out: IO[bytes]) -> None:
    params = {
        k: v for k, v in (("account_id", args.account_id), ("group_name", args.group_name)) if v
    }
    url = f"{args.url.rstrip('/')}/{args.api_version}/streams/export"
    async with (
        aiohttp.ClientSession(headers=_headers(args.token)) as session,
        session.get(url, params=params) as resp,
    ):
        if resp.status != 200:
            raise SystemExit(f"luna-streams export: {resp.status} {await resp.text()}")
        async for chunk in resp.content.iter_chunked(64 * 1024):
            out.write(chunk)
    out.flush()


def parts(lines: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the part's first line, its lines) in parts small enough to send."""
    start, size = 0, 0
    for index, line in enumerate(lines):
        if index > start and (index - start >= PART_LINES or size + len(line) > PART_BYTES):
            yield start, lines[start:index]
            start, size = index, 0
        size += len(line) + 1
    if start < len(lines):
        yield start, lines[start:]


async def import_(args: argparse.Namespace, lines: list[bytes]) -> dict[str, int]:
    url = f"{args.url.rstrip('/')}/{args.api_version}/streams/import"
    params = {"status": args.status} | ({"account_id": args.account_id} if args.account_id else {})
    totals = {"created": 0, "existing": 0}
    async with aiohttp.ClientSession(
        headers=_headers(args.token) | {"Content-Type": NDJSON}
    ) as session:
        bad: list[dict[str, Any]] = []
        for dry_run in (True, False):
            for first, part in parts(lines):
                query = params | ({"dry_run": "true"} if dry_run else {})
                async with session.post(url, params=query, data=b"\n".join(part)) as resp:
                    answer = await resp.json(content_type=None)
                    if resp.status == 400 and "lines" in answer:
                        bad += [x | {"line": x["line"] + first} for x in answer["lines"]]
                        continue
                    if resp.status != 200:
                        raise SystemExit(f"luna-streams import: {resp.status} {answer}")
                    if not dry_run:
                        totals["created"] += answer["created"]
                        totals["existing"] += answer["existing"]
            if bad:
                for item in bad:
                    print(f"line {item['line']}: {item['error']}", file=sys.stderr)
                raise SystemExit(f"luna-streams import: {len(bad)} bad lines; nothing written")
    return totals


def main(command: str, argv: list[str]) -> None:
    args = build_parser(command).parse_args(argv)
    try:
        if command == "export":
            if args.output == "-":
                asyncio.run(export(args, sys.stdout.buffer))
            else:
                with open(args.output, "wb") as out:
                    asyncio.run(export(args, out))
            return
        if args.file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as source:
                raw = source.read()
        totals = asyncio.run(import_(args, raw.split(b"\n")))
    except aiohttp.ClientError as exc:
        raise SystemExit(f"luna-streams {command}: {exc}") from None
    print(json.dumps(totals))
