"""An agent simulator: FaceStream-like handlers that claim streams and report on them.

``luna-streams agent-sim`` lets users try the service without a video agent; tests and
benchmarks use :func:`run_agents`. While it runs it prints a progress line every few
seconds (claims, feedback items, errors, latency); it exits with code 1 when requests failed
(the API is not there, or answered errors). It registers nothing: it claims pending streams from
the queue, sends a feedback batch for the streams it holds every ``feedback_period``
seconds (video info, preview URLs), finishes or fails some of them when asked, and drops
the streams the service answers ``unmodified`` for (paused, cancelled, taken back).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from shared.domain.statuses import DONE, FAILURE, IN_PROGRESS


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds) in milliseconds."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


@dataclass
class AgentStats:
    claimed: int = 0
    feedback_items: int = 0
    modified: int = 0
    unmodified: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    #: when each latency sample ended (``time.monotonic()``), in the same order
    ended_at: dict[str, list[float]] = field(default_factory=dict)
    claimed_ids: list[str] = field(default_factory=list)
    #: the report moments (every ``feedback_period``) that fell due while the agent ran,
    #: sent or not: what a fleet offers is these times the streams it should hold
    reports_due: int = 0
    #: how many report items of each stream were answered (modified or unmodified)
    answered: Counter[str] = field(default_factory=Counter)

    def observe(self, route: str, seconds: float) -> None:
        self.latency.setdefault(route, []).append(seconds)
        self.ended_at.setdefault(route, []).append(time.monotonic())

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def merge(self, other: AgentStats) -> None:
        self.claimed += other.claimed
        self.feedback_items += other.feedback_items
        self.modified += other.modified
        self.unmodified += other.unmodified
        self.claimed_ids += other.claimed_ids
        self.reports_due += other.reports_due
        self.answered.update(other.answered)
        for key, count in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + count
        for route, values in other.latency.items():
            self.latency.setdefault(route, []).extend(values)
            self.ended_at.setdefault(route, []).extend(other.ended_at[route])

    def by_period(self, start: float, period: float) -> dict[str, list[dict[str, float]]]:
        """Latency per route in each ``period`` seconds since ``start`` (monotonic)."""
        out: dict[str, list[dict[str, float]]] = {}
        for route, values in sorted(self.latency.items()):
            slots: dict[int, list[float]] = {}
            for seconds, ended in zip(values, self.ended_at[route], strict=True):
                slots.setdefault(max(0, int((ended - start) // period)), []).append(seconds)
            out[route] = [
                {"from_s": slot * period, "n": len(v), "p50": _pct(v, 0.5), "p99": _pct(v, 0.99)}
                for slot, v in sorted(slots.items())
            ]
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "feedback_items": self.feedback_items,
            "modified": self.modified,
            "unmodified": self.unmodified,
            "reports_due": self.reports_due,
            "errors": dict(self.errors),
            "latency_ms": {
                route: {
                    "n": len(v),
                    "p50": _pct(v, 0.5),
                    "p99": _pct(v, 0.99),
                    "mean": round(statistics.fmean(v) * 1000, 2),
                }
                for route, v in sorted(self.latency.items())
                if v
            },
        }


@dataclass
class AgentConfig:
    url: str
    api_version: int = 1
    max_streams: int = 10
    feedback_period: float = 2.0
    request_period: float = 1.0
    batch_size: int = 100
    #: each agent's first claim and first report come at random moments of their first
    #: periods, as agents started one by one do; False: every agent claims and reports at
    #: the same instants (a fleet restarted at once, the worst case)
    stagger: bool = True
    done_probability: float = 0.0
    failure_probability: float = 0.0
    group_names: list[str] | None = None


def video_info(progress: float, start_time: str | None = None) -> dict[str, Any]:
    """What an agent reports of a source: stable for a camera (it starts once); a video
    file also reports its progress."""
    return {
        "width": 1920,
        "height": 1080,
        "frame_rate": 25,
        "bit_rate": 4_000_000,
        "gop_size": 50,
        "start_time": start_time or datetime.now(UTC).isoformat(timespec="milliseconds"),
        "duration": 0,
        "progress": round(progress, 3),
    }


class Agent:
    def __init__(self, name: str, config: AgentConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.config = config
        self.session = session
        self.held: dict[str, int] = {}  # stream_id -> version
        self.started: dict[str, str] = {}  # stream_id -> when processing started
        self.files: dict[str, float] = {}  # stream_id -> progress, for video files
        self.stats = AgentStats()
        self.base = f"{config.url.rstrip('/')}/{config.api_version}/streams/processing"

    async def _post(self, route: str, path: str, body: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            async with self.session.post(f"{self.base}/{path}", json=body) as resp:
                data = await resp.json(content_type=None)
                self.stats.observe(route, time.perf_counter() - started)
                if resp.status != 200:
                    self.stats.error(f"{route}:{resp.status}:{data.get('error_code')}")
                    return None
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.error(f"{route}:{type(exc).__name__}")
            return None

    async def claim(self) -> None:
        room = self.config.max_streams - len(self.held)
        if room <= 0:
            return
        filters: dict[str, Any] = {}
        if self.config.group_names:
            filters["group_names"] = self.config.group_names
        data = await self._post("claim", "queue", {"filters": filters, "limit": room})
        for stream in (data or {}).get("streams", []):
            self.held[stream["stream_id"]] = stream["version"]
            self.started[stream["stream_id"]] = datetime.now(UTC).isoformat(timespec="milliseconds")
            if (stream.get("data") or {}).get("type") == "videofile":
                self.files[stream["stream_id"]] = 0.0
            self.stats.claimed += 1
            self.stats.claimed_ids.append(stream["stream_id"])

    def _status(self) -> str:
        roll = random.random()
        if roll < self.config.failure_probability:
            return FAILURE
        if roll < self.config.failure_probability + self.config.done_probability:
            return DONE
        return IN_PROGRESS

    def _progress(self, stream_id: str) -> float:
        if stream_id not in self.files:
            return 0.0
        self.files[stream_id] = min(1.0, self.files[stream_id] + random.uniform(0.0, 0.05))
        return self.files[stream_id]

    async def report(self) -> None:
        items = [
            {
                "stream_id": stream_id,
                "version": version,
                "status": self._status(),
                "error": None,
                "video_info": video_info(self._progress(stream_id), self.started.get(stream_id)),
                "preview": {
                    "live": {"url": f"http://127.0.0.1:1/{self.name}/{stream_id}/live"},
                    "last_frame": {"url": f"http://127.0.0.1:1/{self.name}/{stream_id}/frame"},
                },
            }
            for stream_id, version in self.held.items()
        ]
        for start in range(0, len(items), self.config.batch_size):
            batch = items[start : start + self.config.batch_size]
            for item in batch:
                if item["status"] == FAILURE:
                    item["error"] = "simulated failure"
            data = await self._post("feedback", "feedback", {"streams": batch})
            self.stats.feedback_items += len(batch)
            if data is None:
                continue
            outcome = data["streams"]
            self.stats.modified += len(outcome["modified"])
            self.stats.unmodified += len(outcome["unmodified"])
            self.stats.answered.update(
                entry["stream_id"] for entry in outcome["modified"] + outcome["unmodified"]
            )
            for entry in outcome["unmodified"] + [
                m for m in outcome["modified"] if m["status"] != IN_PROGRESS
            ]:
                self.held.pop(entry["stream_id"], None)

    async def run(self, until: float) -> AgentStats:
        """Claim every ``request_period`` and report every ``feedback_period`` until
        ``until``; each wakes at its own time (a report is not held back by the claims'
        rhythm). A report that falls due while the last request is still out is sent
        when it returns (late), so a slow service gets fewer reports, never more."""
        period, every = self.config.feedback_period, self.config.request_period
        now = time.monotonic()
        # agents started one by one (stagger) claim and report at moments of their own;
        # a fleet restarted at once claims at once and reports a period later
        next_report = now + (random.uniform(0, period) if self.config.stagger else period)
        next_claim = now + (random.uniform(0, every) if self.config.stagger else 0.0)
        while (now := time.monotonic()) < until:
            if now >= next_claim:
                await self.claim()
                next_claim = time.monotonic() + every
            if time.monotonic() >= next_report:
                self.stats.reports_due += 1
                await self.report()
                next_report += period
            await asyncio.sleep(max(0.0, min(next_claim, next_report, until) - time.monotonic()))
        # the moments that fell due while the last requests were out, not sent
        while next_report < until:
            self.stats.reports_due += 1
            next_report += period
        return self.stats


Progress = Callable[[float, AgentStats], None]


async def _report_progress(
    group: list[Agent], started: float, period: float, progress: Progress
) -> None:
    while True:
        await asyncio.sleep(period)
        progress(time.monotonic() - started, combined(group))


def combined(group: list[Agent]) -> AgentStats:
    total = AgentStats()
    for agent in group:
        total.merge(agent.stats)
    return total


async def run_agents(
    config: AgentConfig,
    agents: int,
    duration: float,
    *,
    progress: Progress | None = None,
    progress_period: float = 5.0,
) -> AgentStats:
    """Run ``agents`` agents for ``duration`` seconds; ``progress`` gets the running totals
    every ``progress_period`` seconds."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.monotonic()
        until = started + duration
        group = [Agent(f"agent-{i}", config, session) for i in range(agents)]
        reporter = (
            asyncio.create_task(_report_progress(group, started, progress_period, progress))
            if progress is not None
            else None
        )
        try:
            await asyncio.gather(*(agent.run(until) for agent in group))
        finally:
            if reporter is not None:
                reporter.cancel()
    return combined(group)


async def probe(url: str, within: float = 5.0) -> str | None:
    """None when ``GET /version`` answers at ``url``, else why not, in one line."""
    try:
        client_timeout = aiohttp.ClientTimeout(total=within)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.get(f"{url.rstrip('/')}/version") as resp,
        ):
            if resp.status != 200:
                return f"GET /version answered {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def progress_line(elapsed: float, stats: AgentStats) -> str:
    """``12 s: claimed 10, feedback items 40 (38 modified), errors 0, claim p50 3.1 ms ...``"""
    summary = stats.summary()
    errors = sum(stats.errors.values())
    parts = [
        f"{elapsed:.0f} s: claimed {stats.claimed}",
        f"feedback items {stats.feedback_items} ({stats.modified} modified, "
        f"{stats.unmodified} unmodified)",
        f"errors {errors}",
    ]
    for route, figures in summary["latency_ms"].items():
        parts.append(f"{route} p50 {figures['p50']} ms p99 {figures['p99']} ms")
    line = ", ".join(parts)
    if stats.errors:
        worst = max(stats.errors.items(), key=lambda item: item[1])
        line += f" (most: {worst[0]} x{worst[1]})"
    return line


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, except the empty ones (flags, repeatable options)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-streams agent-sim",
        description="Simulate FaceStream-like stream-handler agents against a running "
        "luna-streams API: they claim pending streams and report on them. Progress goes to "
        "stderr every --progress-period seconds, the totals to stdout at the end; the exit "
        "code is 1 when requests failed.",
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:5160", help="base URL of the API")
    add("--api-version", type=int, choices=(1, 2), default=1, help="API version to use")
    add("--agents", type=int, default=2, help="number of agents")
    add("--max-streams", type=int, default=10, help="streams each agent holds at most")
    add("--feedback-period", type=float, default=2.0, help="seconds between feedback batches")
    add("--request-period", type=float, default=1.0, help="seconds between claims")
    add("--duration", type=float, default=60.0, help="seconds to run")
    add(
        "--done-probability",
        type=float,
        default=0.0,
        help="chance that a feedback item reports the stream done",
    )
    add(
        "--failure-probability",
        type=float,
        default=0.0,
        help="chance that a feedback item reports the stream failed",
    )
    add(
        "--group-name",
        action="append",
        dest="group_names",
        help="claim only streams of this group (repeat for several)",
    )
    add(
        "--in-step",
        action="store_true",
        help="every agent reports at the same instants (a fleet restarted at once); by "
        "default each starts at a random moment of its first feedback period",
    )
    add("--progress-period", type=float, default=5.0, help="seconds between progress lines")
    add("--quiet", action="store_true", help="no progress lines, only the totals")
    add("--json", action="store_true", help="progress lines and totals as JSON objects")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config = AgentConfig(
        url=args.url,
        api_version=args.api_version,
        max_streams=args.max_streams,
        feedback_period=args.feedback_period,
        request_period=args.request_period,
        done_probability=args.done_probability,
        failure_probability=args.failure_probability,
        group_names=args.group_names,
        stagger=not args.in_step,
    )
    problem = asyncio.run(probe(args.url))
    if problem is not None:
        _emit(args.json, {"error": f"no LUNA Streams API at {args.url}: {problem}"})
        raise SystemExit(1)

    def progress(elapsed: float, stats: AgentStats) -> None:
        if args.json:
            print(json.dumps({"elapsed_s": round(elapsed, 1), **stats.summary()}), file=sys.stderr)
        else:
            print(f"agent-sim: {progress_line(elapsed, stats)}", file=sys.stderr, flush=True)

    started = time.monotonic()
    stats = asyncio.run(
        run_agents(
            config,
            args.agents,
            args.duration,
            progress=None if args.quiet else progress,
            progress_period=args.progress_period,
        )
    )
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"elapsed_s": round(elapsed, 1), **stats.summary()}), flush=True)
    else:
        print(f"agent-sim: done after {progress_line(elapsed, stats)}", flush=True)
    if stats.errors:
        raise SystemExit(1)


def _emit(as_json: bool, message: dict[str, str]) -> None:
    if as_json:
        print(json.dumps(message), flush=True)
    else:
        print(f"agent-sim: {message['error']}", file=sys.stderr, flush=True)
