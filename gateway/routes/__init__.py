"""Route modules; each declares its operations on an :class:`gateway.api.Api`."""
