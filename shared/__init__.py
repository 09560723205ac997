"""Library shared by every luna-streams process: settings, models, rules, storage, broker."""

__version__ = "0.1.0"
