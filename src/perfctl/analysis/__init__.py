"""Pure functions from export tables (DataFrames) to small result tables and dicts."""
