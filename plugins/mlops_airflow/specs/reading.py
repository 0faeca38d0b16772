"""Reading a spec's YAML safely: the section reader behind every field's error message, ``${MLOPS_*}`` expansion, URIs and crons."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mlops_airflow.specs.model import MAX_INTEGER, MAX_NESTING, MAX_SPEC_BYTES, ModelSpecError, shown

_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")
_URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# ${VAR} may name these variables only: a spec is serialized into every DAG, so it must not
# be able to pull any other value of a worker's environment into it.
ENV_ALLOWED = re.compile(r"MLOPS_[A-Z0-9_]+")
# Jinja syntax: a spec's strings reach templated operator fields, where it would be rendered.
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")


class _Section:
    """Reads one mapping of a spec, remembering its dotted path for error messages."""

    def __init__(self, source: str, path: str, raw: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(raw, Mapping):
            self.fail("", f"must be a mapping, got {type(raw).__name__}")
        self.raw = raw
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> None:
        where = ".".join(p for p in (self.path, key) if p) or "<top level>"
        raise ModelSpecError(self.source, where, problem)

    def _get(self, key: str, default: Any, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            if required:
                self.fail(key, "is required")
            return default
        return self.raw[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.fail(key, f"must be a non-empty string, got {shown(value)}")
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {shown(value)}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be <= {maximum}, got {shown(value)}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str:
        choices = tuple(choices)
        value = self.string(key, default, required=default is None)
        if value not in choices:
            self.fail(key, f"must be one of {list(choices)}, got {shown(value)}")
        return value

    def number(self, key: str, default: float | None = None, *, minimum: float | None = None, maximum: float | None = None) -> Any:
        value = self._get(key, default, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            self.fail(key, f"must be within [{minimum}, {maximum}], got {shown(value)}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.fail(key, f"must be within [{minimum}, {maximum}], got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {shown(value)}")
        return value

    def string_list(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self._get(key, [], required)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"must be a list of strings, got {shown(value)}")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            self.fail(key, f"lists {duplicates} more than once")
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, {}, False)
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a mapping, got {type(value).__name__}")
        return dict(value)

    def section(self, key: str, *, required: bool = True) -> _Section:
        raw = self._get(key, {}, required)
        return _Section(self.source, ".".join(p for p in (self.path, key) if p), raw)

    def finish(self) -> None:
        unknown = sorted(map(str, set(self.raw) - self.seen))
        if unknown:
            self.fail(shown(unknown[0], 40).strip("'"), f"unknown field; expected one of {sorted(self.seen)}")


def expand_env(value: str, *, source: str, field_path: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""
    environ = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if not ENV_ALLOWED.fullmatch(name):
            raise ModelSpecError(source, field_path, f"${{{name}}}: only variables named MLOPS_* may be used in a spec")
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        raise ModelSpecError(source, field_path, f"environment variable {name} is not set and has no default")

    return _ENV_PATTERN.sub(substitute, value)


def normalise_uri(value: str) -> str:
    """A plain path becomes an absolute ``file://`` URI; URIs pass through unchanged."""
    if _URI_SCHEME.match(value):
        return value.rstrip("/")
    return "file://" + str(Path(value).expanduser().resolve())


def _uri(section: _Section, key: str, default: str | None = None) -> str:
    raw = section.string(key, default, required=default is None)
    expanded = expand_env(raw, source=section.source, field_path=f"{section.path}.{key}")
    return normalise_uri(expanded)


def _cron(section: _Section, key: str, default: str | None) -> str | None:
    if key in section.raw and section.raw[key] is None:
        section.seen.add(key)
        return None  # an explicit null turns the schedule off
    value = section._get(key, default, False)
    if not isinstance(value, str):
        section.fail(key, f"must be a cron expression, a preset such as '@daily', or null; got {shown(value)}")
    if value.startswith("@"):
        if value not in _CRON_PRESETS:
            section.fail(key, f"must be a cron expression or one of {list(_CRON_PRESETS)}; got {shown(value)}")
    else:
        from croniter import croniter  # light, and only needed for non-preset schedules

        if not croniter.is_valid(value):
            section.fail(key, f"is not a valid cron expression: {shown(value)}")
    return value


_BaseSafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseSafeLoader):  # type: ignore[misc,valid-type]
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"found the key {shown(key, 40)} twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str | bytes, source: str) -> Any:
    """The YAML document of a spec, after the checks that must come before it is built."""
    if isinstance(text, str):  # from an environment variable: undecodable bytes arrive as surrogates
        text = text.encode("utf-8", errors="surrogateescape")
    size = len(text)
    if size > MAX_SPEC_BYTES:
        raise ModelSpecError(source, "<file>", f"is {size} bytes; a spec may have at most {MAX_SPEC_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelSpecError(source, "<file>", f"is not UTF-8 text (byte {err.start}: {err.reason})") from err
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_BaseSafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ModelSpecError(source, "<file>", f"uses a YAML anchor or alias (line {event.start_mark.line + 1}); write the values out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise ModelSpecError(source, "<file>", f"nests more than {MAX_NESTING} levels deep (line {event.start_mark.line + 1})")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise ModelSpecError(source, "<file>", f"is not valid YAML: {shown(str(err), 300)}") from err
    except (ValueError, OverflowError) as err:  # e.g. an integer literal of thousands of digits
        raise ModelSpecError(source, "<file>", f"holds a value YAML cannot build: {shown(str(err), 200)}") from err


def _refuse_templates(value: Any, source: str, path: str = "") -> None:
    """No spec string may carry Jinja syntax: it would be rendered in a templated field."""
    if isinstance(value, str) and _TEMPLATE_SYNTAX.search(value):
        raise ModelSpecError(source, path or "<top level>", f"must not contain template syntax ('{{{{', '{{%', '{{#'), got {shown(value)}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_templates(key, source, path)
            _refuse_templates(item, source, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_templates(item, source, f"{path}[{index}]")
