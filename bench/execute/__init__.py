"""The execute stage: where and how a plan runs.

Ray Tune (runner.py), the Ray a run starts or joins (ray_session.py, cluster.py), the
resources each node offers (resources.py), the Ray environment (ray_env.py), the config Tune
carries for each trial (trial_config.py), the records of each trial's attempts (records.py),
progress lines (progress.py), and the export of each row's best model (export.py). The only
stage that imports ray; importing it sets Ray's environment first.
"""

from bench.execute.ray_env import apply_ray_environment

apply_ray_environment()
