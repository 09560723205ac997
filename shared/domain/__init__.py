"""The rules, with no I/O: the status machine (statuses, transitions, what a stream gets on
entering a status, each change's guard), autorestart, queue tokens, stream documents and
their views, filters, API models, roles, the preview policy. Imports ``core`` only."""
