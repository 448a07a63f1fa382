"""`ray job submit --working-dir . -- python ray_jobs/synth.py [toolmaster synth flags]`"""
from _entry import run

if __name__ == "__main__":
    run("synth")
