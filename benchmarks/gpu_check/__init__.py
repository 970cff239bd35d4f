"""GPU check: one command on a GPU machine prints ONE table of the report's training speeds.

Run it on a machine with an NVIDIA GPU (an H100 or H200 with CUDA 12), from the repository root::

    pip install -e ".[gpu]"
    KERAS_BACKEND=jax python -m benchmarks.gpu_check            # add --json figures.json to keep them

Each row is trials trained through the trial's own code, ``bench.trial.fit.run_trial``, on the
built-in synthetic cache (built on first use, ~15 s): the report's suite row for the model
(optimiser, options; random weights), 256 px uint8 images, the ``report`` policy's 227 crop on
the device, batch 32, 768 training and 64 validation images an epoch, 4 epochs. Epoch 1 holds
the process start and the compiles (train, validation and inference steps): its seconds are the
"first epoch s" column; train img/s, power, energy, GPU utilisation and memory are the trial's
own epoch reports over epochs 2-4 (the steady state). Rows run one at a time, each trainer in a
spawned process of its own, so XLA's autotuner never times kernels beside another compile.

Default rows, most wanted first, with the time each should take (a guessed compile in
``settings.COMPILE_GUESS_S`` x 1.3 for the first epoch's three compiles, plus ~10 s start and
~6 s of steady epochs; none of it measured on a GPU yet):

=====================================================  ==============
row                                                    ~seconds
=====================================================  ==============
Levi & Hassner, bf16, data on the device                   35
MobileNetV3Large, bf16, device                             75
ResNet50V2, bf16, device                                   75
EfficientNetV2M, bf16, device                             175
Levi & Hassner bf16 device x2, x4 packed                  50, 80
Levi & Hassner fp32, device; bf16, streamed               35, 35
=====================================================  ==============

Packed rows are 2 and 4 Levi & Hassner trials at once in separate processes, as Ray packs
fractional-GPU trials (the single one is the first row): each compiles alone (on JAX from the
persistent compilation cache the first row filled), then all are released together; their
img/s summed and the whole GPU's mean power over it gives energy per image.

Before each row the check estimates its seconds (the guesses, scaled by how the rows measured so
far compared with theirs) and skips it, saying so, where it would end after the deadline (230 s:
the whole check takes at most 4 minutes). By the guesses alone, EfficientNetV2M and the last rows
would not fit; if the compiles are as quick as expected on an H100 every row is measured. At the
deadline the table is printed with whatever was measured (unmeasured rows say why). The matmul
peaks are measured first in a process of their own (~10 s).

What it prints: a progress line per row as it is measured, then the table: model, precision,
data, trainers, batch, input, first epoch s, row s, train img/s, step ms, inference img/s,
forward GFLOP/img, train TFLOP/s, MFU against the datasheet's dense peak of the row's precision
(``bench.trial.mfu.device_peak``: H100 SXM and H200 989.4 TFLOP/s bf16, 494.7 TF32) and against
a matrix-product peak measured there (``keras.ops.matmul`` of two 8192x8192 matrices), power W,
mJ/img, GPU util % and GPU memory GiB (NVML, whole GPU), status.

``DRY=1 python -m benchmarks.gpu_check`` (or ``--dry``) runs the same code paths at tiny sizes
on a CPU (input 64, batch 8, 24 training images, 3 epochs; rows: Levi & Hassner bf16 on the
device, fp32 streamed, bf16 x2 packed); GPU fields read n/a with NVML's reason. Any flag
overrides the GPU or DRY default (``--rows MODEL:PRECISION:DATA[:TRAINERS] ...``, ``--epochs``,
``--train-images``, ``--deadline``, ...; ``--help`` lists them). Keras's backend: ``--backend``,
else $KERAS_BACKEND, else TensorFlow where installed, else JAX.

Modules: ``settings`` (rows, defaults, flags; no Keras), ``table`` (rows' figures from the epoch
reports, the printed table; no Keras), ``peaks`` (datasheet and matmul peaks), ``worker`` (the
trainer and peaks processes), ``check`` (the run, the deadline, the output).
"""
