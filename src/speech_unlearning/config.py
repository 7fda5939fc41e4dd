"""Typed, validated configuration.

Configs are dataclasses. `from_mapping` builds one from a dict (YAML, JSON, or `--set key=value`
pairs from the command line), converting strings to the field types and rejecting unknown keys
by name. Range checks live in each dataclass's `__post_init__` and use `require`, so every bad
value is reported with the field it came from, before any compute is spent.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, Mapping, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the field."""


def require(condition: bool, field: str, message: str) -> None:
    """Raise ConfigError(`field`: `message`) unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{field}: {message}")


def parse_overrides(pairs: Iterable[str], flag: str = "--set") -> dict[str, str]:
    """Turn ["lr=1e-4", "epochs=3"] into {"lr": "1e-4", "epochs": "3"}."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        overrides[key.strip()] = value.strip()
    return overrides


def _convert(value: Any, annotation: Any, field: str) -> Any:
    """Convert `value` (often a string from the CLI) to the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, field)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{field}: cannot convert {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{field}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        converted = [_convert(item.strip() if isinstance(item, str) else item, inner, field) for item in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{field}: expected a boolean, got {value!r}")
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{field}: expected an integer, got {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{field}: expected {annotation.__name__}, got {value!r}") from None
    return value


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_mapping(cls: type[C], values: Mapping[str, Any] | None = None, where: str = "") -> C:
    """Build dataclass `cls` from `values`, rejecting unknown keys and converting types.

    `where` prefixes error messages (e.g. "method scrub") so the user knows which config failed.
    """
    values = dict(values or {})
    prefix = f"{where}: " if where else ""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        try:
            kwargs[name] = _convert(value, hints[name], name)
        except ConfigError as error:
            raise ConfigError(f"{prefix}{error}") from None
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass."""
    return dataclasses.asdict(config)


def describe_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for each field; help comes from `metadata={"help": ...}`."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        type_name = getattr(f.type, "__name__", str(f.type))
        rows.append((f.name, type_name, default, f.metadata.get("help", "")))
    return rows
