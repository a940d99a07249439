"""Checkpoint files: reading any supported format safely, and the download cache."""
