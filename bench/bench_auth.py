"""What authentication costs on the hot path: claims and feedback with LUNA_STREAMS_AUTH
off, then on (each agent sending an agent token), in the deployment shape.

Each round starts a stack (``luna-streams all``), creates the streams, lets 8 agents claim
10 at a time until the queue is empty, then reports steady feedback (batches of 100) for
``--seconds``. Rounds alternate off and on, ``--rounds`` times each, and the best figure of
each setting is kept (the machine's noise goes one way: down). With authentication on, the
creates go with an operator token and the agents with agent tokens.

    python -m bench.bench_auth [--streams 1000] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.bench_processing import AGENTS, client_session, creates, feedback
from bench.rounds import claim_for_agents, rounds_parser
from bench.stack import running_stack
from shared.domain.roles import Role
from shared.services.access.credentials import TokenStore
from shared.store.mongo import open_database


async def _tokens(mongo_uri: str, db_name: str) -> tuple[str, str]:
    database = await open_database(mongo_uri, db_name)
    try:
        store = TokenStore(database)
        _, operator = await store.create(Role.OPERATOR, name="bench operator")
        _, agent = await store.create(Role.AGENT, name="bench agent")
        return operator, agent
    finally:
        await database.close()


async def one_round(auth: bool, streams: int, seconds: float) -> dict[str, float]:
    env: dict[str, Any] = {"STREAM_STATUS_OBSOLETING_PERIOD": "3600"}
    if auth:
        env["LUNA_STREAMS_AUTH"] = "on"
    with running_stack(**env) as stack:
        operator, agent = await _tokens(stack.mongo_uri, stack.db_name) if auth else (None, None)
        async with client_session(operator) as ops, client_session(agent) as agents:
            create_rate, create_errors = await creates(ops, stack.url, streams)
            claim_rate, mine = await claim_for_agents(agents, stack.url)
            rate, _, p99, errors, *_ = await feedback(agents, stack.url, mine, seconds, False)
    if create_errors or errors:
        raise SystemExit(f"errors: {create_errors} creates, {errors} feedback")
    return {"creates": create_rate, "claims": claim_rate, "feedback": rate, "p99": p99}


async def run(streams: int, seconds: float, rounds: int) -> None:
    best: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for _ in range(rounds):
        for auth in (False, True):
            figures = await one_round(auth, streams, seconds)
            print(
                f"auth {'on ' if auth else 'off'}: "
                + ", ".join(
                    f"{k} {v:.3f}" if k == "p99" else f"{k} {v:.0f}/s" for k, v in figures.items()
                ),
                flush=True,
            )
            for key, value in figures.items():
                keep = min if key == "p99" else max
                best[auth][key] = keep(best[auth].get(key, value), value)
    print(f"\nauthentication cost ({streams} streams, {AGENTS} agents, best of {rounds} rounds)")
    print(f"{'work':32} {'auth off':>10} {'auth on':>10} {'on/off':>7}")
    for key, name in (
        ("creates", "creates/s, 16 in flight"),
        ("claims", "claims: streams/s, limit 10"),
        ("feedback", "feedback items/s, batches of 100"),
    ):
        off, on = best[False][key], best[True][key]
        print(f"{name:32} {off:10.0f} {on:10.0f} {on / off:7.3f}")
    off, on = best[False]["p99"], best[True]["p99"]
    print(f"{'feedback p99, ms':32} {off * 1000:10.0f} {on * 1000:10.0f} {on / off:7.3f}")


def main() -> None:
    args = rounds_parser(__doc__).parse_args()
    asyncio.run(run(args.streams, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
