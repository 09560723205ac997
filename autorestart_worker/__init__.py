"""The autorestart worker: restarts failed streams, downgrades streams of silent agents,
republishes missing queue tokens and finishes interrupted outboxes (dramatiq)."""
