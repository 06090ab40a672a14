"""What the driver runs: a model (built-in config or a local folder) over a list of page images."""
