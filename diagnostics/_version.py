"""The version of the infoscope distribution (read by pyproject.toml and the CLI)."""

__version__ = "0.1.0"
