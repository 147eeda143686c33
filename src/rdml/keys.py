"""Typed configuration keys and the one way rdml checks a value: every error names the key, the
value and what is allowed, before any work starts. Pure Python, so every layer may use it."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PARTNER", "ConfigError", "Key", "one_of", "at_least", "in_range", "real_in_range", "count", "show"]


# The measurement setting that names a second run a measurement reads beside its own (a landscape's OKDPH
# run, rdml.analysis.measure), by run id: planned by the layouts, read by the measurement, checked by the tables.
PARTNER = "partner"


class ConfigError(ValueError):
    """A value that is not allowed; the message names it and what is allowed."""


@dataclass(frozen=True)
class Key:
    """One `rdml train` key: its name, default, type (str, bool, bool|auto, int, float, list[str], list[int]), help,
    and the check of its value on its own (checks across keys belong to the config or the method)."""

    name: str
    default: Any
    kind: str
    help: str
    check: Callable[[Any], None] | None = field(default=None, compare=False)

    @property
    def nullable(self) -> bool:
        return self.default is None

    def parse(self, value: Any) -> Any:
        """A command-line string or a YAML value as this key's type."""
        try:
            if self.nullable and (value is None or isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
                return None
            if self.kind == "str":
                if not isinstance(value, str):
                    raise ValueError
                return value
            if self.kind == "bool|auto" and isinstance(value, str) and value.strip().lower() == "auto":
                return "auto"
            if self.kind in ("bool", "bool|auto"):
                if isinstance(value, bool):
                    return value
                lowered = str(value).strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return lowered in ("true", "1", "yes")
            if self.kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value)
            if self.kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
            element = self.kind[len("list[") : -1]
            return [str(v).strip() if element == "str" else int(v) for v in items]
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name}={value!r} is not a valid {self.kind}") from None


def show(value: Any) -> str:
    """A value as it is written on the command line."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def one_of(name: str, value: Any, allowed: Iterable) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; allowed: {', '.join(sorted(map(str, allowed)))}")


def at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{name}={value} must be >= {low}")


def in_range(name: str, value: float, low: float, high: float, allowed: str, *, open_low: bool = False,
             open_high: bool = False) -> None:
    """`low <= value <= high`, strict where open; NaN is refused (pass open_high=True for "finite")."""
    ok = not math.isnan(value) and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        raise ConfigError(f"{name}={value} is not allowed; it must be {allowed}")


def real_in_range(name: str, value: object, low: float, high: float, allowed: str, **bounds: bool) -> float:
    """`in_range` for a value passed from Python code: it must also be a real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name}={value!r} is not allowed; it must be {allowed}")
    in_range(name, float(value), low, high, allowed, **bounds)
    return float(value)


def count(name: str, value: object) -> int:
    """A count such as `threads` or `jobs_per_gpu`, from params.yaml or the command line alike: an integer
    >= 1, or a string of its digits (not a bool, a float, a sign or spaces), so both give one rule."""
    number = int(value) if isinstance(value, str) and re.fullmatch(r"[0-9]+", value) else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ConfigError(f"{name}={value!r} is not allowed; allowed: an integer >= 1")
    return number
