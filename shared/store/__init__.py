"""MongoDB: the client, collections and indexes, the change writer (one guarded write per
change, with its log rows and queue tokens through the outbox), leases, stream liveness,
the reports a stream shows, the embedded server. Imports ``core``, ``domain``,
``telemetry``; never ``messaging`` (the change writer publishes through the domain's
``TokenPublisher`` protocol)."""
