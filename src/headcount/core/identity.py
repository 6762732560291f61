"""A device's identity: its Ed25519 key pair, device id and role.

The device id is derived from the public key (the first 10 bytes of its
SHA-256, in hex), as Syncthing does, so it cannot be claimed without the key.
:func:`check_device_id` is the one check of a device id handed to us (by a
peer, a user or a file). The private key lives in the data directory with
owner-only permissions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeGuard

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import InputError, StoreError
from .files import create_private_dir, write_atomic

KEY_FILE = "device.key"
IDENTITY_FILE = "device.json"
DATA_DIR_ENV = "HEADCOUNT_DATA_DIR"
DEVICE_ID_BYTES: Final = 10
DEVICE_ID_LENGTH: Final = 2 * DEVICE_ID_BYTES  # hex characters
DEVICE_ID_PATTERN: Final = re.compile(f"[0-9a-f]{{{DEVICE_ID_LENGTH}}}")


class Role(StrEnum):
    """What a device may write. Admins and relays are the authority."""

    GATE = "gate"
    ADMIN = "admin"
    RELAY = "relay"

    @property
    def is_authority(self) -> bool:
        return self is not Role.GATE


def device_id_for(public_key: Ed25519PublicKey) -> str:
    """The device id of ``public_key``: 20 lower-case hex characters."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:DEVICE_ID_BYTES].hex()


def is_device_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` has the form of a device id: :data:`DEVICE_ID_LENGTH`
    lower-case hex characters (it says nothing of who holds the key)."""
    return isinstance(value, str) and DEVICE_ID_PATTERN.fullmatch(value) is not None


def check_device_id(value: object) -> str:
    """``value``, checked to have the form of a device id (see :func:`is_device_id`).

    Raises:
        InputError: code ``invalid_device_id``.
    """
    if not is_device_id(value):
        raise InputError(
            f"{value!r:.80} is not a device id ({DEVICE_ID_LENGTH} lower-case hex characters)",
            code="invalid_device_id",
        )
    return value


def default_data_dir() -> Path:
    """``$HEADCOUNT_DATA_DIR``, else ``$XDG_DATA_HOME/headcount``, else
    ``~/.local/share/headcount``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "headcount"


@dataclass(frozen=True, slots=True)
class Identity:
    """A device's key, id, role and display name."""

    private_key: Ed25519PrivateKey
    device_id: str
    role: Role
    name: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_raw(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def create_identity(data_dir: Path, *, role: Role = Role.GATE, name: str = "") -> Identity:
    """Create a new device identity in ``data_dir``.

    Raises:
        InputError: ``data_dir`` already holds a device identity.
    """
    create_private_dir(data_dir)
    key_path = data_dir / KEY_FILE
    if key_path.exists():
        raise InputError(f"{data_dir} already holds a device ({key_path} exists)", code="exists")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: two concurrent `init`s cannot both believe they created the key.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    device_id = device_id_for(key.public_key())
    meta = {"device_id": device_id, "role": role.value, "name": name or device_id[:8]}
    write_atomic(data_dir / IDENTITY_FILE, (json.dumps(meta, indent=2) + "\n").encode(), 0o600)
    return Identity(key, device_id, role, meta["name"])


def load_identity(data_dir: Path) -> Identity:
    """Load the device identity stored in ``data_dir``.

    Raises:
        StoreError: no identity, unreadable key, or a key that does not match
            the recorded device id.
    """
    key_path = data_dir / KEY_FILE
    if not key_path.exists():
        raise StoreError(
            f"no device in {data_dir}: run `headcount init` first (or pass --data-dir)",
            code="not_initialised",
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        meta = json.loads((data_dir / IDENTITY_FILE).read_text("utf-8"))
        role = Role(meta["role"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"device identity in {data_dir} is unreadable: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"{key_path} is not an Ed25519 key")
    device_id = device_id_for(key.public_key())
    if meta.get("device_id") != device_id:
        raise StoreError(f"{data_dir / IDENTITY_FILE} does not match {key_path}")
    return Identity(key, device_id, role, str(meta.get("name", device_id[:8])))
