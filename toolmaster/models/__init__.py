"""Model building and loading (the tiny local model for laptops and CI)."""
