"""A StableToolBench-compatible virtual tool server: POST /virtual answered by cache, simulator or fallback."""
