"""`ray job submit --working-dir . -- python ray_jobs/sft.py --config configs/X.yaml [k=v ...]`"""
from _entry import run

if __name__ == "__main__":
    run("sft")
