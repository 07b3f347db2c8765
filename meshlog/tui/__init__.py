"""The interactive triage app (textual). ``create_app`` is the one entry point for the CLI and tests."""

from meshlog.tui.app import MeshlogApp, create_app

__all__ = ["MeshlogApp", "create_app"]
