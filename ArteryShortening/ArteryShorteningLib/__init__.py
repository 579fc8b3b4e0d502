"""ArteryShorteningLib: the published artery-shortening post-processing (pure Python)."""

__version__ = "0.1.0"
