"""A test's own database and queues: settings that name them, and their removal afterwards.

Every test (or module) runs on a database and a queue prefix of its own, tagged at random, so
that tests sharing the session's MongoDB and RabbitMQ never see each other's streams.
"""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika

from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.runtime.job_worker import AUTORESTART, JANITOR, jobs_queue
from shared.store.mongo import open_database


def isolated_settings(
    mongo_uri: str, amqp_url: str, *, prefix: str = "test", **overrides: Any
) -> Settings:
    """Settings with a database and queue names of their own, ``{prefix}_{tag}``."""
    tag = uuid.uuid4().hex[:12]
    return Settings(
        mongo_uri=mongo_uri,
        amqp_url=amqp_url,
        db_name=f"{prefix}_{tag}",
        queue_prefix=f"{prefix}_{tag}",
        **overrides,
    )


async def drop_database(settings: Settings) -> list[str]:
    """Drop the settings' database; the ids of the groups it held (each has queues)."""
    assert settings.mongo_uri is not None
    database = await open_database(settings.mongo_uri, settings.db_name, ensure_indexes=False)
    group_ids = [doc["_id"] async for doc in database.groups.find({}, {"_id": 1})]
    await database.client.drop_database(settings.db_name)
    await database.close()
    return group_ids


async def drop_everything(settings: Settings) -> None:
    """Drop the settings' database and delete their queues: the streams' and feedback queues,
    each group's, and the job workers' (with their delay and dead-letter queues)."""
    group_ids = await drop_database(settings)
    jobs = [
        f"{jobs_queue(settings, kind)}{suffix}"
        for kind in (AUTORESTART, JANITOR)
        for suffix in ("", ".DQ", ".XQ")
    ]
    names = QueueNames(settings.queue_prefix)
    await delete_queues(settings.amqp_url, [*names.every(group_ids), *jobs])


async def delete_queues(amqp_url: str, queue_names: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in queue_names:
            await channel.queue_delete(name)
