"""Seals on per-user EC2 access keys.

Keys live in the user's OpenNebula template (`EC2_ACCESS_KEYS` vectors), which users may edit
themselves (`one.user.update` on their own user). So an entry counts only when it carries
`SEAL` = HMAC-SHA256 over its owner, key id, secret and status, keyed from the server
credentials econe already holds (`econe admin-keys` writes it with the same key): a user can
neither mint keys nor copy another user's key id onto their own account.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any


def seal_key_from(material: bytes) -> bytes:
    """The sealing key: derived, so the server credential itself is never used directly."""
    return hashlib.sha256(b"econe access-key seal\0" + material).digest()


def seal(key: bytes, uid: int, entry: dict[str, Any]) -> str:
    text = "\n".join(
        [str(uid), *(str(entry.get(k, "")).strip() for k in ("ACCESS_KEY_ID", "SECRET", "STATUS"))]
    )
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def is_sealed(key: bytes | None, uid: int, entry: dict[str, Any]) -> bool:
    given = str(entry.get("SEAL", "")).strip()
    return bool(key and given) and hmac.compare_digest(given, seal(key, uid, entry))
