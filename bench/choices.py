"""How a trial may execute, as the command line and a TrialSpec name it: backend, precision,
XLA and data placement, and the flags that set them.

Imports nothing heavy: ``bench.run`` reads these before it knows which Keras backend to load;
bench/trial/execution.py resolves ``auto`` on the node that runs a trial.
"""

BACKENDS = ("tensorflow", "jax", "torch")
# a trial's precision once resolved: one vocabulary from spec to record to MFU peak
RESOLVED_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = ("auto", *RESOLVED_PRECISIONS)
JIT_CHOICES = ("auto", "on", "off")
DATA_ON_DEVICE_CHOICES = ("auto", "on", "off")
# bench.run's flags for these choices: flag -> (choices, help)
EXECUTION_FLAGS = {
    "--backend": (BACKENDS, "Keras backend of driver and trials (default: $KERAS_BACKEND, tensorflow)"),
    "--precision": (PRECISIONS, "fp32, bf16, fp16 (loss-scaled); auto: bf16 on GPUs that have it"),
    "--jit": (JIT_CHOICES, "XLA; auto: Keras's choice (on GPUs and JAX, off for TF on a CPU)"),
    "--data-on-device": (DATA_ON_DEVICE_CHOICES, "images on the device, batches gathered there (auto: if they fit)"),
}
EXECUTION_KEYS = ("backend", "precision", "jit", "data_on_device")
# what ranks a run's rows and what its accuracy budget and time-to-target read (--metric, a
# suite's ``metric``): name -> words; each is reported per epoch as ``val_<name>``
METRICS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}


def metric_column(metric: str) -> str:
    """The per-epoch column a ranking metric is reported in: ``val_balanced_accuracy``."""
    return f"val_{metric}"
