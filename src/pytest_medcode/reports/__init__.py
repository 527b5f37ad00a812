"""Report writers: the run folder (Parquet, JSON) and the terminal table."""
