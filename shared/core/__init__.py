"""The bottom layer: settings, the error tree, the clock, shared types, group commit and
retry backoff. Imports nothing else of ``shared``."""
