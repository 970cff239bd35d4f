"""``python -m models [--json] [--all] [PATTERN]``: every model by name, with its size and compute.

Builds each registered model at its default options (random weights, nothing downloaded) and
prints its parameters, trainable parameters, default input size and forward GFLOPs per image,
as a table or, with ``--json``, as a list of objects with keys name, params,
trainable_params, input_size, gflops. ``--all`` lists, without building them, every model a
suite can name: the registered ones and every keras.applications model as ``keras:<Name>``,
with the normalisation each expects.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (after the log level, which TensorFlow reads at import)
from tabulate import tabulate  # noqa: E402

import models  # noqa: E402
from models.flops import forward_flops  # noqa: E402


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    trainable_params: int
    input_size: int
    gflops: float


def summarise(name: str) -> ModelSummary:
    """Build ``name`` with its defaults and measure it."""
    entry = models.get_model_entry(name)
    model = models.create_model(name)
    try:
        return ModelSummary(
            name=name,
            params=int(model.count_params()),
            trainable_params=sum(math.prod(w.shape) for w in model.trainable_weights),
            input_size=entry.default_input_size,
            gflops=round(forward_flops(model) / 1e9, 4),
        )
    finally:
        del model
        keras.backend.clear_session()


def describe(name: str) -> dict:
    """What the registry says of ``name``, without building it."""
    entry = models.get_model_entry(name)
    return {
        "name": name,
        "description": entry.description,
        "input_size": entry.default_input_size,
        "normalisation": entry.normalisation,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: every model)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--all", action="store_true", help="every model a suite can name (keras:<Name> too), unbuilt")
    args = parser.parse_args(argv)
    names = models.list_models(args.pattern, resolvable=args.all)
    if not names:
        print(
            f"error: no registered model matches {args.pattern!r} (known: {', '.join(models.list_models())})",
            file=sys.stderr,
        )
        return 2
    rows = [describe(name) if args.all else asdict(summarise(name)) for name in names]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(tabulate(rows, headers="keys", tablefmt="github", intfmt=",", floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
