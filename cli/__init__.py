"""The ``luna-streams`` command and the programs it runs (agent simulator, tokens,
export/import): programs on top of the library, not part of it."""
