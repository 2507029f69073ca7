"""The pseudonymisation key: 256 random bits in a file only its owner can read, outside the workspace.

The key file holds the key as 64 hexadecimal characters (so that it can be
backed up on paper). Everything else sees only its fingerprint. Purpose keys
(pseudonyms, date shifts) are derived from it with HMAC-SHA256 and a label,
so that no two uses share a key. Study pseudonyms are not: each study has a
random secret of its own (:mod:`~research_kit.pseudonymise.study_secrets`),
so the runner that makes them never holds this key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from research_kit.core.errors import BadInput, MissingData, PolicyRefusal

KEY_ENV = "RESEARCH_KIT_KEY_FILE"
DEFAULT_KEY_FILE = Path(".secrets") / "pseudonymisation.key"
KEY_BYTES = 32


@dataclass(frozen=True, repr=False)
class Key:
    """A loaded key. Its repr shows the fingerprint only, so it cannot leak through a log or a traceback."""

    secret: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.secret)

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose, e.g. ``"pseudonym"`` or ``"study:ABC"``."""
        return hmac.new(self.secret, f"research-kit/{purpose}".encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint!r})"


def fingerprint(secret: bytes) -> str:
    """A public name for a key: 16 hex characters of a labelled SHA-256, useless for guessing it."""
    return hashlib.sha256(b"research-kit/fingerprint\x00" + secret).hexdigest()[:16]


def key_path(path: Path | None = None) -> Path:
    return path or Path(os.environ.get(KEY_ENV) or DEFAULT_KEY_FILE)


def new_key(path: Path | None = None, *, workspace_root: Path | None = None) -> tuple[Path, str]:
    """Write a new random key (mode 0600); return its path and fingerprint. Never overwrites a key."""
    target = key_path(path).resolve()
    if workspace_root is not None and target.is_relative_to(workspace_root.resolve()):
        raise PolicyRefusal(f"{target}: the key must live outside the workspace ({workspace_root})")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PolicyRefusal(f"{target}: a key already exists and is never overwritten") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex() + "\n")
    return target, fingerprint(secret)


def load_key(path: Path | None = None) -> Key:
    """Read the key, refusing one that others can read or that is shorter than 256 bits."""
    target = key_path(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        raise MissingData(f"{target}: no pseudonymisation key (run 'research-kit key new')") from None
    if mode & 0o077:
        raise PolicyRefusal(f"{target}: the key file can be read by others (mode {mode:04o}); run chmod 600 on it")
    text = target.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise BadInput(f"{target}: not a key file (expected hexadecimal characters)") from None
    if len(secret) < KEY_BYTES:
        raise PolicyRefusal(f"{target}: the key has {len(secret) * 8} bits; at least {KEY_BYTES * 8} are needed")
    return Key(secret)
