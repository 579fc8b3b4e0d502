"""ArteryShorteningLib: the published artery-shortening post-processing (pure Python)."""

__version__ = "0.1.0"

from .shortening import ShorteningResult, shorten_arteries  # noqa: E402

__all__ = ["shorten_arteries", "ShorteningResult"]
