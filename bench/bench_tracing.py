"""What traces cost the hot path: claim and feedback throughput with traces on and off.

Each round starts a fresh stack (``luna-streams all``, as in bench/bench_processing.py) and
drives it over HTTP as bench/bench_metrics.py does: creates, then 8 agents claiming 10 at a
time until the queue is empty (streams/s), then 8 agents reporting batches of 100 as fast as
answers come, "steady" (in_progress, nothing new) and "changing" (a new video_info each
time), items/s and the p50 of a report's answer.

- on: ``OTEL_EXPORTER_OTLP_ENDPOINT`` names a local OTLP/HTTP receiver (tests/otlp_receiver.py,
  a thread of this process that parses every export and counts its spans, as a collector
  would), so every process of the stack makes spans and exports them in batches
  (the SDK's defaults); with ``--ratio`` below 1, only that share of the traces is sampled
  (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``), the rest costs the decision;
- off: no endpoint: nothing of OpenTelemetry is imported (the shipped default).

Metrics are as shipped in both. Rounds alternate (off, on, off, on, ...) so that drift on a
shared machine falls on both; each figure is the median of its rounds. The cost is
1 - on / off.

    python -m bench.bench_tracing [--streams 1000] [--seconds 10] [--rounds 2] [--ratio 1]
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.bench_processing import AGENTS, BATCH, client_session
from bench.rounds import hot_path, off_and_on, rounds_parser
from bench.stack import running_stack
from tests.otlp_receiver import OtlpReceiver, receiving

Figures = dict[str, float]


def stack_env(endpoint: str | None, ratio: float) -> dict[str, str]:
    if endpoint is None:
        return {}
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    if ratio < 1:
        env |= {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(ratio),
        }
    return env


async def one_round(
    receiver: OtlpReceiver | None, endpoint: str | None, ratio: float, streams: int, seconds: float
) -> Figures:
    before = receiver.total if receiver is not None else 0
    with running_stack(
        STREAM_STATUS_OBSOLETING_PERIOD="3600", **stack_env(endpoint, ratio)
    ) as stack:
        async with client_session() as session:
            claim_rate, steady, changing = await hot_path(session, stack.url, streams, seconds)
    # counted once the stack has stopped: each process sends what it holds as it exits
    spans = (receiver.total if receiver is not None else 0) - before
    if endpoint is not None and spans == 0:
        raise SystemExit("traces on, but no span reached the receiver: the switch did not work")
    return {
        "claims": claim_rate,
        "steady": steady[0],
        "changing": changing[0],
        "steady_p50": steady[1] * 1000,
        "changing_p50": changing[1] * 1000,
        "errors": float(steady[3] + changing[3]),
        "spans": float(spans),
    }


def report(results: dict[bool, list[Figures]], receiver: OtlpReceiver, ratio: float) -> None:
    sampled = "every trace" if ratio >= 1 else f"{ratio:.0%} of traces sampled"
    print(f"traces cost: the hot path with traces on ({sampled}) vs off (median of rounds)")
    print(f"{'work':44} {'off':>9} {'on':>9} {'cost':>7}   rounds (off | on)")
    for key, name, higher_is_better in (
        ("claims", "claims: streams/s, limit 10", True),
        ("steady", "feedback items/s, batches of 100, steady", True),
        ("changing", "feedback items/s, batches of 100, changing", True),
        ("steady_p50", "feedback p50 ms, steady", False),
        ("changing_p50", "feedback p50 ms, changing", False),
    ):
        off, on, rounds = off_and_on(results, key)
        cost = 1 - on / off if higher_is_better else on / off - 1
        print(f"{name:44} {off:9.0f} {on:9.0f} {cost:7.1%}   {rounds}")
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    spans = sum(r["spans"] for r in results[True])
    print(
        f"feedback errors: {errors:.0f}; spans received with traces on: {spans:.0f} "
        f"in {receiver.requests} exports ({receiver.bytes / 1e6:.1f} MB)"
    )
    for service, count in sorted(receiver.spans.items()):
        top = ", ".join(f"{name} {n}" for name, n in receiver.names[service].most_common(4))
        print(f"  {service}: {count} spans ({top}, ...)")


def main() -> None:
    parser = rounds_parser(__doc__)
    parser.add_argument("--ratio", type=float, default=1.0, help="share of traces sampled")
    args = parser.parse_args()
    if args.streams < AGENTS * BATCH:
        parser.error(f"--streams must be at least {AGENTS * BATCH}")
    if not 0 < args.ratio <= 1:
        parser.error("--ratio must be in (0, 1]")
    results: dict[bool, list[Figures]] = {False: [], True: []}
    with receiving() as (receiver, endpoint):
        for _ in range(args.rounds):
            for on in (False, True):
                started = time.monotonic()
                figures: Any = asyncio.run(
                    one_round(
                        receiver if on else None,
                        endpoint if on else None,
                        args.ratio,
                        args.streams,
                        args.seconds,
                    )
                )
                results[on].append(figures)
                print(
                    f"round traces {'on ' if on else 'off'}: claims {figures['claims']:.0f}/s, "
                    f"steady {figures['steady']:.0f}/s, changing {figures['changing']:.0f}/s, "
                    f"spans {figures['spans']:.0f} ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
        report(results, receiver, args.ratio)


if __name__ == "__main__":
    main()
