"""Reading Nsight Systems SQLite exports: schema by version, then plain tables as DataFrames."""
