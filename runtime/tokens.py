"""Bearer tokens of the HTTP API, read from a mounted Secret file and re-read when it changes.

The file (``server.authTokensFile``) holds one token per line; blank lines and lines starting
with ``#`` are ignored. Kubernetes updates a mounted Secret in place, so the file is checked for
changes (at most once a second) and rotated tokens take effect without a restart; a file that
becomes unreadable keeps the last good tokens. Tokens are compared as SHA-256 digests in constant
time and never logged. Used by :mod:`pilothouse.runtime.edge`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pilothouse.runtime import errors

__all__ = ["RELOAD_INTERVAL_SECONDS", "TokenFile", "parse_tokens"]

log = logging.getLogger(__name__)

RELOAD_INTERVAL_SECONDS: Final = 1.0


def parse_tokens(text: str) -> frozenset[bytes]:
    """SHA-256 digests of the tokens in a token file's text."""
    tokens = (line.strip() for line in text.splitlines())
    return frozenset(hashlib.sha256(t.encode()).digest() for t in tokens if t and t[0] != "#")


class TokenFile:
    """The accepted tokens; :meth:`accepts` checks an ``Authorization`` header value."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.monotonic
    ):
        self.path = Path(path)
        self._clock = clock
        self._checked = clock()
        try:
            self._mtime = self.path.stat().st_mtime_ns
            self._digests = parse_tokens(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise errors.ConfigError(f"server.authTokensFile: cannot read {self.path}: {e}") from e
        if not self._digests:
            raise errors.ConfigError(f"server.authTokensFile: {self.path} holds no token")

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < RELOAD_INTERVAL_SECONDS:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime == self._mtime:
                return
            digests = parse_tokens(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            log.warning("cannot re-read the token file, keeping the last tokens: %s", e)
            return
        if not digests:
            log.warning("the token file is empty now, keeping the last tokens")
            return
        self._mtime, self._digests = mtime, digests
        log.info("token file reloaded (%d tokens)", len(digests))

    def accepts(self, authorization: bytes | str | None) -> bool:
        """Whether an ``Authorization`` header carries one of the tokens (``Bearer <token>``)."""
        if not authorization:
            return False
        value = (
            authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
        )
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        self._maybe_reload()
        digest = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found
