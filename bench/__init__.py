"""adience-bench orchestration: a run's stages, each a folder, over models/ and data/.

plan/ decides what will run, execute/ runs it (the only place that imports ray), trial/ is
one trial on the node that runs it, report/ says what the run means; ``python -m bench.run``
(run.py) takes a run through them. At this floor: specs.py (TrialSpec and its bounds),
choices.py (execution choices and their flags), errors.py, io.py and quiet.py.
"""

import os
from pathlib import Path

# TensorFlow's C++ start-up notes (oneDNN, CPU features) drown the harness's own output;
# set before keras/tensorflow is first imported. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# the checkout bench/ lives in: what a Ray job takes to every node, what the manifest's git describes
REPO_ROOT = Path(__file__).resolve().parent.parent
