"""RabbitMQ: the broker connection and its topology, queue-token publishing and
buffering, the feedback RPC between gateway and queue worker. Imports ``core``,
``domain``, ``telemetry``; never ``store``."""
