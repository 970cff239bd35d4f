"""The report stage: what a finished run means.

Tidy tables of its trials and epochs (results.py), the answer under the run's budgets
(answer.py), leaderboard cells and the leaderboard (cells.py, leaderboard.py), plots, the
board across runs and two runs compared (compare.py; ``python -m bench.compare``), and the
run folder a run writes (run_folder.py). It imports nothing of bench/execute/ and no ray.
"""
