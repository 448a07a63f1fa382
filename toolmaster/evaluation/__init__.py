"""Evaluation: run a policy over an environment split and write the benchmark's report."""
