"""Streams: stored documents, their API views, filters and every state change."""
