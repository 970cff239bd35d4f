"""adience-bench orchestration: suites of trials, scheduling, profiling and leaderboards."""

import os

# TensorFlow's C++ start-up notes (oneDNN, CPU features) drown the harness's own output;
# set before keras/tensorflow is first imported. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
