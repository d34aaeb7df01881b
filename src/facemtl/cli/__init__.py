"""Command-line interface: `facemtl <command>`."""
