"""The trial stage: one trial, on the node that runs it.

Its input from data/, its model and ``fit`` (fit.py), what it measures on itself each epoch
(measure.py), how it executes (execution.py: backend, precision, XLA, data placement), its
evaluation, checkpoints, NVML (gpu.py), MFU and FLOPs, and the node's manifest (env.py).
It imports nothing of bench/plan/, bench/execute/ or bench/report/, and no ray: a trial runs,
and is tested, without Ray.
"""
