"""Drivers: the GRPO and SFT loops (algorithm code only; model tensors stay in the actors)."""
