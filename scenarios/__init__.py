"""Built-in scenario files (``*.toml``), loaded by name with ``harness run --scenario NAME``."""
