"""The plan stage: what a run will run, decided once on the driver.

The run request and its Plan (planner.py; run.json), the command line that asks for it
(command_line.py), the report's suites and a user's suite files (suites.py, suite.py,
suite_files.py), protocols, goals and budgets, the up-front estimates of time and GPU
shares (estimate.py), and the run's data found, made and decoded once (dataset.py).
It imports nothing of bench/execute/ or bench/report/, and no ray.
"""
