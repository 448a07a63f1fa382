"""Shared entry for ray_jobs/*: run one ``toolmaster`` subcommand inside a Ray job's driver process."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the job's working dir


def run(command: str) -> None:
    from toolmaster.cli import main

    sys.exit(main([command] + sys.argv[1:]))
