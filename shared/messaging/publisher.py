"""Queue tokens onto RabbitMQ: the all-streams queue and each group's queue."""

from __future__ import annotations

from shared.domain.tokens import QueueToken
from shared.messaging.broker import Broker


class BrokerTokenPublisher:
    """Publishes a token to the all-streams queue and to each group's queue.

    Only :class:`~shared.messaging.broker.Broker` methods are called, so a lost or refusing
    broker is
    :class:`shared.core.errors.BrokerUnavailable` (translated there), never aio-pika's own errors.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish_token(
        self, token: QueueToken, group_ids: list[str], *, only_groups: bool = False
    ) -> None:
        body = token.encode()
        if not only_groups:
            await self.broker.publish(self.broker.names.streams, body)
        for group_id in group_ids:
            name = self.broker.names.group(group_id)
            await self.broker.ensure_queue(name)
            await self.broker.publish(name, body)

    async def drop_group_queue(self, group_id: str) -> None:
        """Delete a deleted group's queue (and the tokens in it: its streams left it)."""
        await self.broker.delete_queue(self.broker.names.group(group_id))
