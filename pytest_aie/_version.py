"""The package's version, importable without the public face (the results log's run header
names it)."""

__version__ = "0.1.0"
