"""Teachers that write training trajectories, and the synthesis pipeline that filters and saves them."""
