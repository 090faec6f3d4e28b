"""User-facing errors and the checks that raise them.

Every error a user can cause (a bad option, file, folder, model spec or device) is a :class:`CircuitclustError`
whose message says what is wrong and what to do, on one line. The CLI prints it as ``error: <message>`` and exits
with status 2, with no traceback; the Python API raises it. :class:`OptionError` is also a ``ValueError``, so
code that catches ``ValueError`` around a bad argument keeps working.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence


class CircuitclustError(Exception):
    """Bad input or an unavailable resource, with a message that says what to do."""


class OptionError(CircuitclustError, ValueError):
    """An option or argument with a value out of range or not among its choices. ``option`` names the
    parameter (``k``, ``batch_size``) when the message starts with it, so that the CLI can show it as the
    command-line option (``--k``, ``--batch-size``) instead."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option

    def cli_message(self) -> str:
        """The message with a leading parameter name written as its command-line option."""
        text = str(self)
        if self.option and not self.option.startswith("-") and text.startswith(self.option):
            return "--" + self.option.replace("_", "-") + text[len(self.option):]
        return text


class ModelNotAvailableError(CircuitclustError):
    """A model spec that cannot be loaded here (offline and not cached, missing folder, bad file)."""


class UnsupportedModelError(ModelNotAvailableError):
    """A model whose architecture circuitclust has no weight table for (encoder, mixture of experts, ...)."""


class DataError(CircuitclustError):
    """Empty, malformed or missing data files (corpora, tasks)."""


class RunFolderError(CircuitclustError):
    """A run folder or run file that is missing, truncated, of the wrong kind, or that would be overwritten."""


class PartitionMismatchError(CircuitclustError, ValueError):
    """A saved partition that does not fit the model or the graphs it is applied to."""


class DeviceError(CircuitclustError):
    """A device that does not exist on this machine."""


# ---------------------------------------------------------------------------------------------- checks
# One place for the checks every options object uses, so that each parameter is validated once, with one
# error type and one wording. ``name`` is the parameter's name as the user wrote it (``k``, ``--k``).


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within ``[minimum, maximum]``; :class:`OptionError` otherwise."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be a whole number, got {value!r}", option=name)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise OptionError(f"{name}={value} is out of range: {_range_text(minimum, maximum)}", option=name)
    return value


def check_float(name: str, value: object, minimum: float | None = None, maximum: float | None = None, *,
                open_min: bool = False, open_max: bool = False) -> float:
    """``value`` as a finite float within the range (``open_*``: the bound itself is excluded)."""
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}", option=name) from None
    if not math.isfinite(value):
        raise OptionError(f"{name}={value} must be a finite number", option=name)
    low_bad = minimum is not None and (value <= minimum if open_min else value < minimum)
    high_bad = maximum is not None and (value >= maximum if open_max else value > maximum)
    if low_bad or high_bad:
        lo = "" if minimum is None else f"{'>' if open_min else '>='} {minimum:g}"
        hi = "" if maximum is None else f"{'<' if open_max else '<='} {maximum:g}"
        bounds = " and ".join(s for s in (lo, hi) if s)
        raise OptionError(f"{name}={value:g} is out of range: it must be {bounds}", option=name)
    return value


def check_threads(threads: object) -> int:
    """A CPU thread count between 1 and 4x the machine's cores (more only exhausts memory and processes)."""
    import os

    return check_int("threads", threads, 1, 4 * (os.cpu_count() or 1))


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices``; :class:`OptionError` listing them otherwise."""
    choices = list(choices)
    if value not in choices:
        raise OptionError(f"{name}={value!r} is not one of: {', '.join(map(str, choices))}", option=name)
    return value


def check_choices(name: str, values: Sequence[str], choices: Iterable[str], *, allow_empty: bool = False
                  ) -> tuple[str, ...]:
    """Every item of ``values`` among ``choices`` (and at least one unless ``allow_empty``)."""
    choices = list(choices)
    values = tuple(values)
    if not values and not allow_empty:
        raise OptionError(f"{name} is empty: give one or more of {', '.join(choices)}", option=name)
    bad = [v for v in values if v not in choices]
    if bad:
        raise OptionError(f"{name}: unknown {', '.join(map(repr, bad))}; use one or more of {', '.join(choices)}",
                          option=name)
    return values


def _range_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"it must be between {minimum} and {maximum}"
    if minimum is not None:
        return f"it must be >= {minimum}"
    return f"it must be <= {maximum}"


def resolve_device(spec: object | None):
    """``spec`` (``None``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``) as a
    ``torch.device`` that exists here; ``None`` means CUDA when available, else the CPU.
    Raises :class:`DeviceError` for a malformed name or a device this machine does not have."""
    import torch

    if spec is None or spec == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)  # type: ignore[arg-type]
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device {spec!r} is not a device name: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r}: CUDA is not available on this machine: use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {spec!r}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
        return dev
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {spec!r}: MPS is not available on this machine: use --device cpu")
        return dev
    raise DeviceError(f"device {spec!r} is not supported: use cpu, cuda or cuda:N")


DTYPES = ("float32", "bfloat16", "float16", "float64")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def check_dtype(dtype: object | None) -> str | None:
    """``dtype`` (``None``, ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"float64"`` (for precision checks),
    the short forms ``fp32``/``bf16``/``fp16``, or a ``torch.dtype`` of those) as its canonical name; None
    stays None (float32)."""
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32",
            "fp64": "float64", "double": "float64"}.get(name, name)
    if name not in DTYPES:
        raise OptionError(f"dtype {dtype!r} is not supported: use one of {', '.join(DTYPES)}", option="dtype")
    return name


def check_device_map(device_map: object | None, device: object | None = None) -> str | dict | None:
    """A ``device_map`` for placing an inference model across devices: one of ``DEVICE_MAPS`` (accelerate's
    strategies: ``auto`` spreads the blocks over every visible GPU, then CPU), a dict ``{module name: device}``,
    a JSON object string of one, or None. Refuses a ``device`` given beside it (the map decides placement)."""
    if device_map is None or device_map == "":
        return None
    if device is not None and device != "":
        raise OptionError("device_map places the model itself: give device or device_map, not both",
                          option="device_map")
    if isinstance(device_map, str) and device_map.strip().startswith("{"):
        import json

        try:
            device_map = json.loads(device_map)
        except json.JSONDecodeError as e:
            raise OptionError(f"device_map is not valid JSON ({e.msg}): give a strategy or an object "
                              '{"module": "cuda:0", ...}', option="device_map") from None
    if isinstance(device_map, dict):
        if not device_map or not all(isinstance(k, str) and isinstance(v, (str, int)) for k, v in device_map.items()):
            raise OptionError("device_map must map module names to devices (\"cuda:0\", 1, \"cpu\")",
                              option="device_map")
        return dict(device_map)
    if device_map not in DEVICE_MAPS:
        raise OptionError(f"device_map {device_map!r} is not a placement strategy: use one of {', '.join(DEVICE_MAPS)} "
                          "or a JSON object {\"module\": device}", option="device_map")
    return str(device_map)
