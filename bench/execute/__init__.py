"""The execute stage: where and how a plan runs.

Ray Tune (runner.py, the only module in the project that imports ray), the resources each
node offers (resources.py), joining a cluster (cluster.py), the Ray environment
(ray_env.py), the records of each trial's attempts (records.py), progress lines
(progress.py), and the export of each row's best model (export.py).
"""
