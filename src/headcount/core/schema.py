"""Field merge policies: the default schema and an event's extension of it."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError


class Policy(StrEnum):
    """How concurrent (or repeated) writes to one field combine."""

    LWW = "lww"
    EARLIEST = "earliest"
    LATEST = "latest"
    AUTHORITY = "authority"
    UNION = "union"
    CRITICAL = "critical"


ATTENDANCE_FIELDS = ("check_in", "check_out")
ATTENDANCE_POLICIES = frozenset({Policy.EARLIEST, Policy.LATEST, Policy.LWW})
RESERVED_PARTICIPANT_FIELDS = frozenset({"id", "deleted", "conflicts"})
_FIELD_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CONFIG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_SECTIONS = ("participant", "attendance", "config")


@dataclass(frozen=True, slots=True)
class Schema:
    """The merge policy of every field of an event.

    Build one with :func:`default_schema` or :meth:`extend`; the extension
    (a plain dict, as read from TOML) is what an event stores so that every
    replica merges with the same rules.
    """

    participant: Mapping[str, Policy]
    attendance: Mapping[str, Policy]
    config: Mapping[str, Policy]
    extension: Mapping[str, Any] = field(default_factory=dict)

    def participant_policy(self, name: str) -> Policy:
        """Policy of participant field ``name``.

        Raises:
            InputError: the field is not declared in the schema.
        """
        try:
            return self.participant[name]
        except KeyError:
            raise InputError(
                f"unknown participant field {name!r}; declared fields: "
                f"{', '.join(sorted(self.participant))} (declare new ones in the event schema)"
            ) from None

    def config_policy(self, key: str) -> Policy:
        """Policy of configuration key ``key``."""
        return self.config.get(key, self.config["*"])

    def extend(self, extension: Mapping[str, Any]) -> Schema:
        """Return this schema with ``extension`` applied on top.

        Raises:
            InputError: unknown section, bad field name, unknown policy, an
                attendance field other than check_in/check_out, or a policy an
                attendance field cannot take.
        """
        if not isinstance(extension, Mapping):
            raise InputError("schema must be a table of sections")
        sections: dict[str, dict[str, Policy]] = {
            "participant": dict(self.participant),
            "attendance": dict(self.attendance),
            "config": dict(self.config),
        }
        for section, table in extension.items():
            if section not in sections:
                raise InputError(
                    f"unknown schema section [{section}]; expected one of {', '.join(_SECTIONS)}"
                )
            if not isinstance(table, Mapping):
                raise InputError(f"schema section [{section}] must be a table")
            for name, raw in table.items():
                sections[section][name] = _check_entry(section, name, raw)
        merged = _merge_extensions(self.extension, extension)
        return Schema(sections["participant"], sections["attendance"], sections["config"], merged)


def _check_entry(section: str, name: str, raw: object) -> Policy:
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        policy = Policy(raw)
    except ValueError:
        choices = ", ".join(p.value for p in Policy)
        raise InputError(
            f"[{section}] {name} = {raw!r}: unknown policy (choose one of {choices})"
        ) from None
    if section == "participant":
        if not isinstance(name, str) or not _FIELD_RE.match(name):
            raise InputError(
                f"[participant] {name!r}: field names are lower-case letters, digits and _"
            )
        if name in RESERVED_PARTICIPANT_FIELDS:
            raise InputError(f"[participant] {name!r} is reserved")
    elif section == "attendance":
        if name not in ATTENDANCE_FIELDS:
            raise InputError(f"[attendance] {name!r}: only check_in and check_out exist")
        if policy not in ATTENDANCE_POLICIES:
            raise InputError(f"[attendance] {name} may be earliest, latest or lww, not {policy}")
    elif name != "*" and not _CONFIG_KEY_RE.match(str(name)):
        raise InputError(f"[config] {name!r}: invalid configuration key")
    return policy


def _merge_extensions(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = {section: dict(table) for section, table in base.items()}
    for section, table in extra.items():
        merged.setdefault(section, {}).update(table)
    return merged


def check_config_key(key: str) -> None:
    """Raise :class:`InputError` unless ``key`` is a valid configuration key."""
    if not isinstance(key, str) or not _CONFIG_KEY_RE.match(key):
        raise InputError(
            f"invalid configuration key {key!r}: letters, digits, '_', '.', '-'; at most 128"
        )


def default_schema() -> Schema:
    """The schema every event starts from (``default_schema.toml``)."""
    text = resources.files(__package__).joinpath("default_schema.toml").read_text("utf-8")
    base = Schema({}, {}, {"*": Policy.AUTHORITY})
    return dataclasses.replace(base.extend(tomllib.loads(text)), extension={})


def load_schema_file(path: str | Path) -> dict[str, Any]:
    """Read and validate an event's schema extension from a TOML file.

    Returns:
        The extension as a plain dict, ready for :meth:`Schema.extend`.

    Raises:
        InputError: the file is missing, not TOML, or not a valid schema.
    """
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"schema file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"schema file {path} is not valid TOML: {exc}") from None
    default_schema().extend(data)  # validate now, with a clear message
    return data
