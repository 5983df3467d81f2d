"""The package version: one value, read by the core, the CLI, the panel and the build tool."""

__version__ = "0.1.0"
