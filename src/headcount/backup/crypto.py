"""Encryption of backup payloads: AES-256-GCM, keyed by a passphrase or a key file.

Nothing here is home-made cryptography: the key comes from ``cryptography``'s
:class:`Scrypt` (a passphrase) or from 32 random bytes in a key file, and
every payload is sealed with :class:`AESGCM`. Large payloads are cut into
chunks of :data:`CHUNK_BYTES`, each sealed on its own (the STREAM
construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in age and
Tink): the nonce is a random per-file prefix and the chunk number, and the
associated data binds each chunk to its backup, its file, its position and
whether it is the last one, so chunks cannot be reordered, moved between
files or backups, or cut off at the end without the tag failing.

The manifest records the parameters (salt and cost, or nothing for a key
file) and a *key check*, an HMAC of a fixed label under the key, so that a
wrong passphrase is reported as such before any payload is opened. Neither
reveals the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from headcount.core.errors import InputError
from headcount.core.files import read_secret_file

from .errors import CORRUPT, KEY_REQUIRED, TRUNCATED, WRONG_KEY, BackupError

KEY_BYTES = 32
SALT_BYTES = 16
SCRYPT_N = 2**17  # ~0.4 s and 128 MiB here: the OWASP minimum for scrypt
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_N = 2**20  # a manifest may not make us spend more than ~1 GiB on a key
CHUNK_BYTES = 1 << 20
CIPHER = "aes-256-gcm"
MAGIC = b"HCBKGCM1"
_PREFIX_BYTES = 8
_TAG_BYTES = 16
_AAD_DOMAIN = b"headcount/backup/chunk/v1\x00"
_CHECK_LABEL = b"headcount/backup/key-check/v1"


@dataclass(frozen=True, slots=True)
class Secret:
    """What the operator gave to encrypt or unlock backups: a passphrase or a key."""

    passphrase: bytes | None = None
    key: bytes | None = None

    def __post_init__(self) -> None:
        if (self.passphrase is None) == (self.key is None):
            raise InputError("give exactly one of a passphrase and a key file")
        if self.passphrase is not None and not self.passphrase:
            raise InputError("the backup passphrase is empty")
        if self.key is not None and len(self.key) != KEY_BYTES:
            raise InputError(f"a backup key is {KEY_BYTES} bytes")


def read_passphrase_file(path: Path, what: str = "the passphrase file") -> bytes:
    """The passphrase in ``path`` (one trailing line break dropped).

    Raises:
        InputError: unreadable, or accessible by other users (code
            ``insecure_secret_file``).
    """
    return read_secret_file(path, what).rstrip(b"\r\n")


def read_key_file(path: Path) -> bytes:
    """The key in ``path``: 64 hex digits (surrounding white space ignored) or 32 raw bytes.

    Raises:
        InputError: unreadable, accessible by other users, or neither form.
    """
    data = read_secret_file(path, "the key file")
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == KEY_BYTES:
        return data
    raise InputError(f"{path} is not a backup key (64 hex digits or {KEY_BYTES} raw bytes)")


def write_key_file(path: Path) -> bytes:
    """Create ``path`` (mode 0600, never overwriting) holding a fresh random key, in hex.

    Raises:
        InputError: ``path`` exists or cannot be created.
    """
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists already; not overwriting a key") from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode("ascii") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def key_check(key: bytes) -> str:
    """A public check value of ``key`` (an HMAC of a fixed label: reveals nothing of it)."""
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()[:32]


@dataclass(slots=True)
class KeyRing:
    """Derives (once per salt and cost) the keys of the backups a secret unlocks."""

    secret: Secret | None
    _cache: dict[tuple[Any, ...], bytes] = field(default_factory=dict)

    def new_params(self, scrypt_n: int = SCRYPT_N, reuse: Mapping[str, Any] | None = None) -> dict:
        """Encryption parameters for a new backup, reusing ``reuse`` (a parent's)
        when this secret unlocks it, so that a chain costs one key derivation."""
        if self.secret is None:
            raise BackupError("no passphrase or key to encrypt with", code=KEY_REQUIRED)
        if self.secret.key is not None:
            params: dict[str, Any] = {"kdf": "keyfile"}
        elif reuse is not None and reuse.get("kdf") == "scrypt" and self._unlocks(reuse):
            params = {k: reuse[k] for k in ("kdf", "salt", "n", "r", "p")}
        else:
            salt = secrets.token_bytes(SALT_BYTES).hex()
            params = {"kdf": "scrypt", "salt": salt, "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P}
        key = self._derive(params)
        return {"cipher": CIPHER, "chunk": CHUNK_BYTES, **params, "key_check": key_check(key)}

    def unlock(self, params: Mapping[str, Any]) -> bytes:
        """The key of a backup encrypted with ``params`` (its manifest's ``encryption``).

        Raises:
            BackupError: ``key_required`` (no secret, or the other kind of
                secret), ``wrong_key`` (it does not match the key check),
                ``backup_corrupt`` (unusable parameters).
        """
        if self.secret is None:
            raise BackupError(
                "the backup is encrypted: give --passphrase-file, --key-file or "
                "$HEADCOUNT_BACKUP_PASSPHRASE",
                code=KEY_REQUIRED,
            )
        key = self._derive(params)
        if not hmac.compare_digest(key_check(key), str(params.get("key_check", ""))):
            what = "key file" if params.get("kdf") == "keyfile" else "passphrase"
            raise BackupError(f"wrong {what} for this backup", code=WRONG_KEY)
        return key

    def _unlocks(self, params: Mapping[str, Any]) -> bool:
        try:
            self.unlock(params)
        except BackupError:
            return False
        return True

    def _derive(self, params: Mapping[str, Any]) -> bytes:
        assert self.secret is not None
        kdf = params.get("kdf")
        if kdf == "keyfile":
            if self.secret.key is None:
                raise BackupError("this backup is encrypted with a key file", code=KEY_REQUIRED)
            return self.secret.key
        if kdf != "scrypt":
            raise BackupError(f"unknown key derivation {kdf!r}", code=CORRUPT)
        if self.secret.passphrase is None:
            raise BackupError("this backup is encrypted with a passphrase", code=KEY_REQUIRED)
        salt, n, r, p = _scrypt_params(params)
        slot = (salt, n, r, p, self.secret.passphrase)
        if slot not in self._cache:
            kdf_ = Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p)
            self._cache[slot] = kdf_.derive(self.secret.passphrase)
        return self._cache[slot]


def _scrypt_params(params: Mapping[str, Any]) -> tuple[bytes, int, int, int]:
    try:
        salt = bytes.fromhex(params["salt"])
        n, r, p = (params[k] for k in ("n", "r", "p"))
        if not all(type(v) is int for v in (n, r, p)):
            raise ValueError("non-integer cost")
    except (KeyError, TypeError, ValueError):
        raise BackupError("the manifest's scrypt parameters are unusable", code=CORRUPT) from None
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise BackupError(f"scrypt cost n={n} r={r} p={p} is out of bounds", code=CORRUPT)
    return salt, n, r, p


class ChunkSealer:
    """Seals one payload file's bytes, chunk by chunk (see the module docstring)."""

    def __init__(self, key: bytes, context: bytes) -> None:
        self._aead = AESGCM(key)
        self._context = context
        self._prefix = secrets.token_bytes(_PREFIX_BYTES)
        self._counter = 0

    def header(self) -> bytes:
        return MAGIC + self._prefix

    def seal(self, chunk: bytes, final: bool) -> bytes:
        """One framed chunk: its 4-byte length, then ciphertext and tag."""
        nonce, aad = _nonce_aad(self._prefix, self._context, self._counter, final)
        self._counter += 1
        sealed = self._aead.encrypt(nonce, chunk, aad)
        return len(sealed).to_bytes(4, "big") + sealed


def open_chunks(key: bytes, context: bytes, fh: BinaryIO) -> Iterator[bytes]:
    """The plaintext chunks of a sealed file.

    Raises:
        BackupError: ``backup_corrupt`` (a tag fails: altered, reordered or
            moved chunks) or ``backup_truncated`` (chunks missing at the end).
    """
    head = fh.read(len(MAGIC) + _PREFIX_BYTES)
    if len(head) != len(MAGIC) + _PREFIX_BYTES or not head.startswith(MAGIC):
        raise BackupError("an encrypted payload lacks its header", code=CORRUPT)
    aead, prefix = AESGCM(key), head[len(MAGIC) :]
    counter = 0
    frame = _read_frame(fh)
    while frame is not None:
        following = _read_frame(fh)
        nonce, aad = _nonce_aad(prefix, context, counter, following is None)
        try:
            yield aead.decrypt(nonce, frame, aad)
        except InvalidTag:
            code = TRUNCATED if following is None else CORRUPT
            raise BackupError(
                f"encrypted chunk {counter} does not authenticate", code=code
            ) from None
        counter += 1
        frame = following
    if counter == 0:
        raise BackupError("an encrypted payload has no chunks", code=TRUNCATED)


def _read_frame(fh: BinaryIO) -> bytes | None:
    size = fh.read(4)
    if not size:
        return None
    length = int.from_bytes(size, "big")
    if len(size) != 4 or not _TAG_BYTES <= length <= CHUNK_BYTES + _TAG_BYTES:
        raise BackupError("an encrypted payload has a bad chunk length", code=CORRUPT)
    data = fh.read(length)
    if len(data) != length:
        raise BackupError("an encrypted payload ends inside a chunk", code=TRUNCATED)
    return data


def _nonce_aad(prefix: bytes, context: bytes, counter: int, final: bool) -> tuple[bytes, bytes]:
    position = counter.to_bytes(8, "big") + (b"\x01" if final else b"\x00")
    return prefix + counter.to_bytes(4, "big"), _AAD_DOMAIN + context + b"\x00" + position
