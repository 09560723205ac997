"""Process runtime: one lifecycle for every process, dramatiq jobs and their leases,
worker heartbeats, dependency probes. The top layer of the library."""
