"""Augmentation policies: the built-in ones by name, and the ones a suite file declares.

A ``Policy`` says what happens to a cached image before the network sees it: the training
crop (validation takes the centre crop of the same size), flips, geometry, photometry,
noise, RandAugment, and MixUp / CutMix of the batch (data/mixing.py, on the host: the
labels mix too). ``none`` resizes to the model's input only. Built-in policies carry the
report's magnitudes; a suite file's ``[policies.NAME]`` table declares one with the keys of
``KEYS``, checked here so that a bad value is one line naming the key.

Declared magnitudes are in the units a user thinks in: rotation in degrees, translation and
zoom as a fraction of the side, brightness as a fraction of the [0, 255] range, contrast as
the factor (``0.8`` draws from [0.2, 1.8], ``[0.5, 1.5]`` from that range); a number is
symmetric around no change, a ``[low, high]`` pair the range itself.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

Range = tuple[float, float]
KEYS = {
    "description": "a one-line description (default: made from the keys)",
    "crop": "training crop: a fraction of the side (0.875) or pixels (227)",
    "horizontal_flip": "flip left-right, half the images",
    "vertical_flip": "flip upside down, half the images",
    "rotation": "degrees: a number (+-) or [low, high]",
    "zoom": "fraction of the side: a number (+-) or [low, high]; positive zooms out",
    "translation": "fraction of the side: a number (+-) or [low, high]",
    "shear": "shear factor on each axis: a number (+-)",
    "brightness": "fraction of [0, 255]: a number (+-) or [low, high]",
    "contrast": "factor: a number f (from [1 - f, 1 + f]) or [low, high]",
    "noise": "Gaussian noise, standard deviation in [0, 255] units",
    "randaugment": "true (Keras's magnitude 0.5) or a magnitude in (0, 1]",
    "mixup": "MixUp's alpha (> 0)",
    "cutmix": "CutMix's alpha (> 0)",
}


class PolicyError(ValueError):
    """A declared policy that cannot be built; ``key`` names the offending key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Policy:
    """What happens to a cached image before the network: training augmentation, validation crop."""

    name: str
    description: str = ""
    crop: int | float | None = None  # int: pixels; float in (0, 1): a fraction of the side; None: no crop
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation: Range | None = None  # degrees
    zoom: Range | None = None  # fraction of the side (Keras's RandomZoom: positive zooms out)
    translation: Range | None = None  # fraction of the side
    shear: float = 0.0
    brightness: Range | None = None  # fraction of [0, 255]
    contrast: Range | None = None  # the factor's range
    noise: float = 0.0  # standard deviation in [0, 255] units
    randaugment: float = 0.0  # Keras's RandAugment factor; 0: off
    mixup: float = 0.0  # alpha; 0: off
    cutmix: float = 0.0

    def __post_init__(self):
        if not self.description:
            object.__setattr__(self, "description", describe(self))

    def crop_size(self, side: int) -> int | None:
        """The crop's side in pixels for images of ``side`` (None: no crop); PolicyError when it cannot."""
        if self.crop is None:
            return None
        size = round(self.crop * side) if isinstance(self.crop, float) else self.crop
        if size > side:
            raise PolicyError("crop", f"policy {self.name} crops {size} px from {side} px images")
        return max(1, size)

    def output_size(self, side: int) -> int:
        return self.crop_size(side) or side

    @property
    def mixes(self) -> bool:
        """Whether training batches are mixed (MixUp / CutMix): their labels are then soft."""
        return bool(self.mixup or self.cutmix)

    def to_config(self) -> dict[str, Any]:
        """Plain values (lists for ranges): a Keras layer config, run records."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in vars(self).items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Policy:
        ranges = ("rotation", "zoom", "translation", "brightness", "contrast")
        return cls(**{key: tuple(value) if key in ranges and value else value for key, value in config.items()})


def describe(policy: Policy) -> str:
    """A one-line description of what ``policy`` does in training and validation."""
    if policy.crop is None:
        parts = []
    elif isinstance(policy.crop, float):
        parts = [f"random crop of {policy.crop:g} of the side (validation: the centre crop)"]
    else:
        parts = [f"random {policy.crop} px crop (validation: the centre crop)"]
    flips = [axis for axis, on in (("horizontal", policy.horizontal_flip), ("vertical", policy.vertical_flip)) if on]
    if flips:
        parts.append(f"random {' and '.join(flips)} flips")
    for key, unit in (("rotation", " deg"), ("zoom", ""), ("translation", ""), ("brightness", "")):
        value = getattr(policy, key)
        if value:
            parts.append(f"{key} {value[0]:g} to {value[1]:g}{unit}")
    if policy.shear:
        parts.append(f"shear {policy.shear:g}")
    if policy.contrast:
        parts.append(f"contrast x{policy.contrast[0]:g} to x{policy.contrast[1]:g}")
    if policy.noise:
        parts.append(f"Gaussian noise sd {policy.noise:g}")
    if policy.randaugment:
        parts.append(f"RandAugment (2 ops a batch, magnitude {policy.randaugment:g})")
    for key, title in (("mixup", "MixUp"), ("cutmix", "CutMix")):
        if getattr(policy, key):
            parts.append(f"{title} alpha {getattr(policy, key):g}")
    return ", ".join(parts) if parts else "none: resized to the model's input only, validation the same"


# report section 3.1: a random 227 crop of the 256 px face (validation: the centre crop), h+v
# flips, brightness +-63/255, contrast 0.2x-1.8x. The crop is a share, so any cache size takes it.
REPORT_AUGMENTATION = "random horizontal and vertical flips, brightness +-63/255, contrast x0.2 to x1.8"
REPORT = Policy(
    "report",
    f"random 227/256 crop (validation: the centre crop), {REPORT_AUGMENTATION}",
    crop=227 / 256,
    horizontal_flip=True,
    vertical_flip=True,
    brightness=(-63 / 255, 63 / 255),
    contrast=(0.2, 1.8),
)
BUILT_IN = {
    "none": Policy("none"),
    "report": REPORT,
    # report table 4, "No Crop": the whole image
    "nocrop": dataclasses.replace(
        REPORT,
        name="nocrop",
        description=f"as report without the crop: the whole image, {REPORT_AUGMENTATION}",
        crop=None,
    ),
    # report section 3.5.3 (autoencoder): report + rotation, translation, shear, noise. The
    # report gives no magnitudes; these are mild ones of our choosing.
    "autoencoder-extra": dataclasses.replace(
        REPORT,
        name="autoencoder-extra",
        description="report + rotation +-15 deg, translation +-10%, shear 0.1, Gaussian noise sd 5 (of 255)",
        rotation=(-15.0, 15.0),
        translation=(-0.1, 0.1),
        shear=0.1,
        noise=5.0,
    ),
}
# what a trial whose suite file names no policy gets: the dataset's own (data/datasets.py)
DATASET_DEFAULT = "auto"


def get_policy(name: str, declared: dict[str, Any] | None = None) -> Policy:
    """The built-in policy ``name``, or the one ``declared`` (a suite file's table) makes."""
    if declared:
        return declare_policy(name, declared)
    if name not in BUILT_IN:
        known = ", ".join([*BUILT_IN, DATASET_DEFAULT])
        raise PolicyError("", f"unknown policy {name!r} (built in: {known}; a suite file declares others)")
    return BUILT_IN[name]


def declare_policy(name: str, table: dict[str, Any]) -> Policy:
    """The Policy a ``[policies.NAME]`` table declares; PolicyError names the first bad key."""
    if name in BUILT_IN or name == DATASET_DEFAULT:
        raise PolicyError("", f"{name!r} is a built-in policy's name; give yours another")
    for key in table:
        if key not in KEYS:
            raise PolicyError(key, f"unknown key (known: {', '.join(KEYS)})")
    values: dict[str, Any] = {"name": name}
    for key, value in table.items():
        values[key] = _CHECKS[key](key, value)
    return Policy(**values)


def _number(key: str, value, low: float = 0.0, high: float = math.inf, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PolicyError(key, f"must be a number, got {value!r}")
    if value < low or value > high or (open_low and value == low):
        lower = f"{'>' if open_low else '>='} {low:g}"
        raise PolicyError(key, f"must be {lower}{f' and <= {high:g}' if high < math.inf else ''}, got {value!r}")
    return float(value)


def _range(key: str, value, high: float, centre: float = 0.0) -> Range | None:
    """A number f (centre - f to centre + f) or [low, high] within [centre - high, centre + high]."""
    if isinstance(value, list):
        if len(value) != 2:
            raise PolicyError(key, f"must be a number or [low, high], got {value!r}")
        low, top = (_number(key, v, centre - high, centre + high) for v in value)
        if low > top:
            raise PolicyError(key, f"[low, high] must have low <= high, got {value!r}")
        return None if low == top == centre else (low, top)
    spread = _number(key, value, 0.0, high)
    return (centre - spread, centre + spread) if spread else None


def _crop(key: str, value) -> int | float:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise PolicyError(key, f"pixels must be >= 1, got {value}")
        return value
    fraction = _number(key, value, 0.0, 1.0, open_low=True)
    if fraction == 1.0:
        raise PolicyError(key, "1.0 is the whole image: leave crop out")
    return fraction


def _flag(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(key, f"must be true or false, got {value!r}")
    return value


def _randaugment(key: str, value) -> float:
    if isinstance(value, bool):
        return 0.5 if value else 0.0
    return _number(key, value, 0.0, 1.0, open_low=True)


def _description(key: str, value) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise PolicyError(key, f"must be one line of text, got {value!r}")
    return value.strip()


_CHECKS = {
    "description": _description,
    "crop": _crop,
    "horizontal_flip": _flag,
    "vertical_flip": _flag,
    "rotation": lambda key, value: _range(key, value, 180.0),
    "zoom": lambda key, value: _range(key, value, 0.9),
    "translation": lambda key, value: _range(key, value, 1.0),
    "shear": lambda key, value: _number(key, value, 0.0, 1.0),
    "brightness": lambda key, value: _range(key, value, 1.0),
    "contrast": lambda key, value: _range(key, value, 1.0, centre=1.0),
    "noise": lambda key, value: _number(key, value, 0.0, 255.0),
    "randaugment": _randaugment,
    "mixup": lambda key, value: _number(key, value, 0.0, open_low=True),
    "cutmix": lambda key, value: _number(key, value, 0.0, open_low=True),
}
