"""Stream reads at 10,000 and 100,000 streams: get, list (first and last page), count.

Streams are seeded straight into MongoDB with the service's own document builder (the
benchmark measures reads; creating 100k through HTTP would only measure inserts). Each
figure is the median of several requests through the gateway, beside the raw MongoDB
query it makes, as a ratio.

    python -m bench.bench_streams [--sizes 10000 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import timedelta

from bench.env import bench_settings, gateway_client, mongo_uri, stored_body, timed
from shared.core.clock import now_utc
from shared.domain.documents import VIEW_PROJECTION, new_stream
from shared.store.mongo import open_database

BODY = stored_body(status="pause")
ACCOUNT: str = BODY["account_id"]


async def seed(database: object, start: int, count: int) -> None:
    from shared.store.mongo import Database

    assert isinstance(database, Database)
    base = now_utc()
    batch = []
    for i in range(start, start + count):
        doc = new_stream(
            str(uuid.uuid4()), 1, {**BODY, "name": f"cam{i}"}, [], base + timedelta(milliseconds=i)
        )
        batch.append(doc)
        if len(batch) == 5000:
            await database.streams.insert_many(batch)
            batch = []
    if batch:
        await database.streams.insert_many(batch)


async def measure(size: int, client: object, database: object, repeat: int) -> dict[str, float]:
    from aiohttp.test_utils import TestClient

    from shared.store.mongo import Database

    assert isinstance(client, TestClient) and isinstance(database, Database)
    some = await database.streams.find_one({}, {"_id": 1}, skip=size // 2)
    assert some is not None
    sid = some["_id"]
    last_page = size // 100

    async def get() -> None:
        resp = await client.get(f"/1/streams/{sid}")
        assert resp.status == 200
        await resp.read()

    async def first() -> None:
        resp = await client.get("/1/streams", params={"page_size": "100"})
        assert resp.status == 200, await resp.text()
        await resp.read()

    async def last() -> None:
        resp = await client.get("/1/streams", params={"page_size": "100", "page": str(last_page)})
        answer = await resp.json()
        assert resp.status == 200 and len(answer["streams"]) == 100, answer

    async def count() -> None:
        resp = await client.get("/1/streams/count", params={"account_id": ACCOUNT})
        assert (await resp.json())["streams_count"] == size

    sort = [("create_time", 1), ("_id", 1)]

    async def raw_get() -> None:
        await database.streams.find_one({"_id": sid}, VIEW_PROJECTION)

    async def raw_first() -> None:
        await database.streams.find({}, VIEW_PROJECTION).sort(sort).limit(100).to_list()

    async def raw_last() -> None:
        await (
            database.streams.find({}, VIEW_PROJECTION)
            .sort(sort)
            .skip((last_page - 1) * 100)
            .limit(100)
            .to_list()
        )

    async def raw_count() -> None:
        await database.streams.count_documents({"account_id": ACCOUNT})

    out = {}
    for name, api, raw in (
        ("get", get, raw_get),
        ("list first page", first, raw_first),
        ("list last page", last, raw_last),
        ("count", count, raw_count),
    ):
        out[name] = await timed(api, repeat)
        out[name + " (raw)"] = await timed(raw, repeat)
    return out


async def main(sizes: list[int], repeat: int) -> None:
    with mongo_uri() as uri:
        settings = bench_settings(uri)
        assert settings.mongo_uri is not None
        database = await open_database(settings.mongo_uri, settings.db_name)
        results: dict[int, dict[str, float]] = {}
        seeded = 0
        async with gateway_client(settings) as client:
            for size in sorted(sizes):
                await seed(database, seeded, size - seeded)
                seeded = size
                results[size] = await measure(size, client, database, repeat)
        await database.client.drop_database(settings.db_name)
        await database.close()
    small, large = min(sizes), max(sizes)
    print(
        f"{'operation':<18}"
        + "".join(f"{s:>12,}" for s in sorted(sizes))
        + f"{'growth':>9}{'api/raw':>9}"
    )
    for op in ("get", "list first page", "list last page", "count"):
        row = "".join(f"{results[s][op] * 1000:>10.1f}ms" for s in sorted(sizes))
        growth = results[large][op] / results[small][op]
        ratio = results[large][op] / max(results[large][op + " (raw)"], 1e-9)
        print(f"{op:<18}{row}{growth:>8.2f}x{ratio:>8.2f}x")
        raw = "".join(f"{results[s][op + ' (raw)'] * 1000:>10.1f}ms" for s in sorted(sizes))
        print(f"{'  raw MongoDB':<18}{raw}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.repeat))
