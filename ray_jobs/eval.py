"""`ray job submit --working-dir . -- python ray_jobs/eval.py [toolmaster eval flags]`"""
from _entry import run

if __name__ == "__main__":
    run("eval")
