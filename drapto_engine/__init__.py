"""drapto engine: everything that is not UI (never imports textual)."""

__version__ = "0.3.1"
