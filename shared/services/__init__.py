"""What the processes call: streams, claims, feedback, groups, logs, the downgrade and
autorestart sweeps, the reconciler, events, access and webhooks. Built on ``store`` and
``messaging``; no HTTP and no process wiring."""
