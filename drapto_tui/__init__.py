"""drapto's Textual TUI: a client of the engine service."""
