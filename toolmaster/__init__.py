"""ToolMaster: trial-then-execute tool learning on Ray."""
