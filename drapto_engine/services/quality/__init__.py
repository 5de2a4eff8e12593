"""Target quality: each segment's CRF chosen to land its measured VMAF on a target.

One loop for every machine: `runner.reach_target` searches with probes, encodes the
segment at the real preset, measures the file it wrote and corrects a miss once. The
caller gives it two callables, how to encode at a CRF into a file and how to measure a
file, so the engine's own slot (services/executors/local.py) and a cluster worker
(cluster/tasks.py) run the same code on the frames each has. `vmaf.py` builds the
measurement from the encode's own arguments and reads libvmaf's log; `search.py` picks
the next CRF from the points measured so far.
"""
