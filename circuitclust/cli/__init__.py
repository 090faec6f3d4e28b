"""Command-line interface (``circuitclust --help``)."""
