"""Exceptions shared across the stages (so that no stage imports a later one for them)."""


class Cancelled(RuntimeError):
    """Raised when ``cancel()`` returned True; nothing was produced."""
