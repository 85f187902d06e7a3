"""Bearer tokens with roles, read from a mounted Secret file and re-read when it changes.

The file (``server.authTokensFile``) holds one token a line: the token, the name of the
identity it proves (what the audit trail records as caller or approver) and its roles
(:class:`pilothouse.runtime.identities.Role`), separated by blanks::

    # token                              identity     roles
    3q2+7w-chat-frontend-token           chat-ui      delegate
    8c1f-alice-token                     alice        approve,read
    b7e0-ci-token                        ci           submit

Blank lines and lines starting with ``#`` are ignored; a line without a name or roles, or with
an unknown role, is an error naming the line. Kubernetes updates a mounted Secret in place, so the
file is checked for changes (at most once a second) and rotated tokens take effect without a
restart; a file that becomes unreadable, empty or invalid keeps the last good tokens (and says
so in the log). Tokens are compared as SHA-256 digests in constant time and never logged.
:class:`TokenFile` is an :class:`pilothouse.runtime.identities.Authenticator`, used by
:mod:`pilothouse.runtime.edge` and the API's routes.
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

from pilothouse.runtime import errors, identities

__all__ = ["RELOAD_INTERVAL_SECONDS", "TokenFile", "parse_tokens"]

log = logging.getLogger(__name__)

RELOAD_INTERVAL_SECONDS: Final = 1.0
_FORMAT: Final = "TOKEN IDENTITY ROLE[,ROLE...]"


def parse_tokens(text: str, *, source: str = "tokens") -> dict[bytes, identities.Identity]:
    """The identities of a token file's text, by SHA-256 digest of their token."""
    out: dict[bytes, identities.Identity] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{source} line {n}"
        if len(fields) != 3:
            raise errors.ConfigError(f"{where}: expected {_FORMAT} ({len(fields)} field(s) found)")
        token, name, roles = fields
        digest = hashlib.sha256(token.encode()).digest()
        if digest in out:
            raise errors.ConfigError(f"{where}: this token is listed twice")
        out[digest] = identities.Identity(name, identities.parse_roles(roles, where=where))
    return out


class TokenFile:
    """The accepted tokens and who they are (see the module docstring)."""

    mode = "tokens"

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.monotonic
    ):
        self.path = Path(path)
        self._clock = clock
        self._checked = clock()
        where = f"server.authTokensFile {self.path}"
        try:
            self._mtime = self.path.stat().st_mtime_ns
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise errors.ConfigError(f"server.authTokensFile: cannot read {self.path}: {e}") from e
        self._tokens = parse_tokens(text, source=where)
        if not self._tokens:
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
            found = parse_tokens(self.path.read_text(encoding="utf-8"), source=str(self.path))
        except (OSError, UnicodeDecodeError, errors.ConfigError) as e:
            log.warning("cannot re-read the token file, keeping the last tokens: %s", e)
            return
        if not found:
            log.warning("the token file is empty now, keeping the last tokens")
            return
        self._mtime, self._tokens = mtime, found
        log.info("token file reloaded (%d tokens)", len(found))

    def identify(self, authorization: bytes | str | None) -> identities.Identity | None:
        """The identity whose token an ``Authorization: Bearer`` value carries, or None."""
        token = identities.bearer_token(authorization)
        if token is None:
            return None
        self._maybe_reload()
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found = None
        for known, identity in self._tokens.items():
            if hmac.compare_digest(digest, known):
                found = identity
        return found

    def accepts(self, authorization: bytes | str | None) -> bool:
        """Whether an ``Authorization`` header carries one of the tokens."""
        return self.identify(authorization) is not None

    async def authenticate(self, authorization: bytes | str | None) -> identities.Identity | None:
        return self.identify(authorization)

    async def allowed(
        self, identity: identities.Identity, permission: identities.Permission
    ) -> bool:
        return identity.granted(permission)
