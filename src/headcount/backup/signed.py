"""Signed manifests: the ``manifest.json`` a device signs beside the payloads it wrote.

Backups (:mod:`.manifest`) and archives (:mod:`headcount.archive.manifest`)
both describe their payload files in one: the format, the device (id,
public key), when it was written, the encryption parameters (never a key)
and every payload's size and SHA-256. The device signs the canonical JSON
(sorted keys, no spaces) of every field but ``signature`` with its Ed25519
key, prefixed by a domain string of the manifest's kind, so that one kind
of manifest never passes for another. The signature covers the fields as
written, unknown ones included, so a reader one minor version older
verifies a newer manifest too.

What differs between the kinds (the domain, the size limit, the error class
and codes, the words of the messages) is a :class:`Rules`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from headcount.core.errors import HeadcountError
from headcount.core.identity import Identity, device_id_for

MANIFEST_FILE = "manifest.json"
_FILE_FIELDS = ("name", "size", "sha256", "raw_size", "raw_sha256")


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One payload file: as stored (``size``, ``sha256``) and its content (``raw_*``)."""

    name: str
    size: int
    sha256: str
    raw_size: int
    raw_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "raw_size": self.raw_size,
            "raw_sha256": self.raw_sha256,
        }


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """The fields every signed manifest has. ``raw`` is the JSON object as written."""

    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def device(self) -> str:
        return str(self.raw["device"])

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.raw["public_key"])

    @property
    def created_ms(self) -> int:
        """When it was written (the backup taken, the event archived)."""
        return int(self.raw["created_ms"])

    @property
    def encryption(self) -> dict[str, Any] | None:
        return self.raw.get("encryption")

    @property
    def files(self) -> list[FileRecord]:
        return [FileRecord(**{k: f[k] for k in _FILE_FIELDS}) for f in self.raw["files"]]

    @property
    def size(self) -> int:
        """Bytes of every payload file (the manifest itself not included)."""
        return sum(f.size for f in self.files)

    def file(self, name: str) -> FileRecord | None:
        return next((f for f in self.files if f.name == name), None)

    def to_json(self) -> bytes:
        return json.dumps(self.raw, indent=1, sort_keys=True).encode("utf-8") + b"\n"


M = TypeVar("M", bound=SignedManifest)


@dataclass(frozen=True, slots=True)
class Rules:
    """How one kind of manifest is signed, and how its failures are reported."""

    domain: bytes
    """Prefixed to the canonical JSON before signing: one per kind."""
    noun: str
    """What the manifest describes, in messages (``backup``, ``archive``)."""
    title: str
    """What an unreadable manifest is called in its message."""
    max_bytes: int
    error: type[HeadcountError]
    """The kind's error class."""
    corrupt: str
    tampered: str
    not_found: str
    unreadable: str
    """The code of a manifest file that exists but cannot be read."""


def sign(body: Mapping[str, Any], identity: Identity, rules: Rules) -> bytes:
    """The JSON of the manifest of ``body`` (every field but the key and the
    signature) with ``identity``'s public key and signature added."""
    raw = {**body, "public_key": identity.public_key_raw.hex()}
    raw["signature"] = identity.sign(signed_bytes(raw, rules.domain)).hex()
    return json.dumps(raw).encode("utf-8")


def parse(data: bytes, rules: Rules, build: Callable[[Any], M]) -> M:
    """Parse a manifest and check its signature against the key it records (not
    that the key is the recorded device's: see :func:`check_signer`).

    Args:
        build: the manifest of a JSON value; raises ``ValueError``, ``TypeError``,
            ``KeyError`` or ``AttributeError`` when the value is not one.

    Raises:
        HeadcountError: ``rules.corrupt`` (not a manifest), ``rules.tampered``
            (the signature does not verify).
    """
    try:
        raw = json.loads(data)
        manifest = build(raw)
        signature = bytes.fromhex(raw["signature"])
        key = Ed25519PublicKey.from_public_bytes(manifest.public_key)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise rules.error(f"{rules.title} is unreadable: {exc}", code=rules.corrupt) from None
    try:
        key.verify(signature, signed_bytes(raw, rules.domain))
    except InvalidSignature:
        raise rules.error(
            f"{rules.noun} {raw.get('id')}: the manifest's signature does not verify: it was "
            "changed after the device wrote it",
            code=rules.tampered,
        ) from None
    return manifest


def check_signer(manifest: SignedManifest, rules: Rules) -> None:
    """The recorded key is the key of the recorded device (ids derive from keys).

    Raises:
        HeadcountError: ``rules.tampered``.
    """
    if device_id_for(Ed25519PublicKey.from_public_bytes(manifest.public_key)) != manifest.device:
        raise rules.error(
            f"{rules.noun} {manifest.id} claims device {manifest.device} but is signed by "
            "another key",
            code=rules.tampered,
        )


def load(directory: Path, rules: Rules, parse_bytes: Callable[[bytes], M]) -> M:
    """Read ``directory/manifest.json`` and parse it with ``parse_bytes``; the
    manifest must name ``directory``.

    Raises:
        HeadcountError: ``rules.not_found`` (no manifest), ``rules.unreadable``,
            ``rules.corrupt`` (larger than any manifest), ``rules.tampered``
            (another directory's manifest), or as ``parse_bytes``.
    """
    path = directory / MANIFEST_FILE
    try:
        with path.open("rb") as fh:
            data = fh.read(rules.max_bytes + 1)
    except FileNotFoundError:
        raise rules.error(
            f"no {rules.noun} in {directory} (no {MANIFEST_FILE})", code=rules.not_found
        ) from None
    except OSError as exc:
        raise rules.error(f"cannot read {path}: {exc.strerror}", code=rules.unreadable) from None
    if len(data) > rules.max_bytes:
        raise rules.error(f"{path} is larger than any manifest", code=rules.corrupt)
    manifest = parse_bytes(data)
    if manifest.id != directory.name:
        raise rules.error(
            f"{directory} holds the manifest of {rules.noun} {manifest.id}", code=rules.tampered
        )
    return manifest


def readable_format(theirs: object, ours: str) -> bool:
    """Whether a reader of format ``ours`` reads format ``theirs``: the same
    major version and a minor at most one apart.

    Raises:
        ValueError: ``theirs`` is not ``MAJOR.MINOR``.
    """
    (major, minor), (our_major, our_minor) = _version(theirs), _version(ours)
    return major == our_major and abs(minor - our_minor) <= 1


def _version(text: object) -> tuple[int, int]:
    major, minor = str(text).split(".")
    return int(major), int(minor)


def signed_bytes(raw: Mapping[str, Any], domain: bytes) -> bytes:
    """What the signature covers: ``domain`` and the canonical JSON of every
    field but ``signature``."""
    body = {k: v for k, v in raw.items() if k != "signature"}
    return domain + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def check_payload_names(files: list[FileRecord]) -> None:
    """Refuse a payload name that would leave the manifest's directory.

    Raises:
        ValueError: a name with a ``/``, a leading dot, or empty.
    """
    for f in files:
        if "/" in f.name or f.name.startswith(".") or not f.name:
            raise ValueError(f"bad payload file name {f.name!r}")
