"""The hash chain that makes the decision log tamper-evident, and its verification.

Each decision record of an agent carries ``chain_seq`` (1, 2, 3... per agent), ``prev_hash``
(the hash of the record before it, or of the retention anchor) and ``hash`` =
``sha256(prev_hash + "\\n" + canonical(record))``. Changing a stored field breaks that
record's hash; deleting a record leaves a gap in ``chain_seq`` and a ``prev_hash`` that points
nowhere; deleting the newest records leaves the chain short of its head
(``audit_chain_heads``). Positions are assigned by the store inside the insert transaction,
under a row lock on the agent's head, so N writers never fork a chain.

``canonical`` is JSON with sorted keys over every stored field but the chain columns, computed
from the values as stored (see :mod:`pilothouse.runtime.audit.rows`), so verification
recomputes it from what it reads. Pure: the store links and reads, this module computes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pilothouse.runtime.audit import rows

__all__ = [
    "COPY_COLUMNS",
    "GENESIS",
    "ChainPoint",
    "ChainVerifier",
    "LinkedRow",
    "canonical",
    "copy_record",
    "link",
    "link_hash",
    "linked_from_record",
]

GENESIS: Final = "0" * 64
"""``prev_hash`` of an agent's first record."""


@dataclass(frozen=True, slots=True)
class ChainPoint:
    """A position in a chain: a head (last record) or an anchor (last deleted record)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class LinkedRow:
    """A decision row with its chain columns."""

    row: rows.DecisionRow
    chain_seq: int
    prev_hash: str
    hash: str


def canonical(row: rows.DecisionRow) -> bytes:
    """The bytes hashed for a record: every stored field, sorted keys, timestamps in UTC."""
    data: dict[str, Any] = {name: getattr(row, name) for name in rows.DECISION_COLUMNS}
    data["ts"] = row.ts.isoformat()
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def link_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()


def link(head: ChainPoint, batch: Sequence[rows.DecisionRow]) -> list[LinkedRow]:
    """Append rows to a chain whose last record is ``head``, in order."""
    out: list[LinkedRow] = []
    seq, prev = head.seq, head.hash
    for row in batch:
        seq += 1
        h = link_hash(prev, canonical(row))
        out.append(LinkedRow(row, seq, prev, h))
        prev = h
    return out


def _where(r: LinkedRow) -> str:
    return f"record #{r.chain_seq} (request {r.row.request_id}, step {r.row.step})"


class ChainVerifier:
    """Walks one agent's chain in ``chain_seq`` order and stops at the first problem.

    Feed rows with :meth:`feed` (in order, as read), then call :meth:`finish` with the head.
    ``problem`` names the first record that was altered or removed.
    """

    def __init__(self, agent: str, anchor: ChainPoint | None) -> None:
        self.agent = agent
        self.anchor = anchor or ChainPoint(0, GENESIS)
        self.verified = 0
        self.problem: str | None = None
        self._last: LinkedRow | None = None

    @property
    def _expected(self) -> ChainPoint:
        if self._last is None:
            return self.anchor
        return ChainPoint(self._last.chain_seq, self._last.hash)

    def feed(self, r: LinkedRow) -> bool:
        """Check the next record; False once a problem was found."""
        if self.problem is not None:
            return False
        expected = self._expected
        if r.chain_seq > expected.seq + 1:
            first, last = expected.seq + 1, r.chain_seq - 1
            gap = f"#{first}" if first == last else f"#{first}..#{last}"
            self.problem = f"record(s) {gap} were removed (the chain resumes at {_where(r)})"
        elif r.chain_seq <= expected.seq:
            self.problem = f"{_where(r)} repeats a position already taken in the chain"
        elif r.prev_hash != expected.hash:
            before = "the retention anchor" if self._last is None else _where(self._last)
            self.problem = f"{before} was altered: {_where(r)} no longer links to it"
        elif link_hash(r.prev_hash, canonical(r.row)) != r.hash:
            self.problem = f"{_where(r)} was altered: its content does not match its hash"
        else:
            self._last = r
            self.verified += 1
            return True
        return False

    def finish(self, head: ChainPoint | None) -> str | None:
        """Compare the end of the walk with the chain's head; the first problem, if any."""
        if self.problem is not None or head is None:
            return self.problem
        end = self._expected
        if head.seq > end.seq:
            first = end.seq + 1
            gap = f"#{first}" if first == head.seq else f"#{first}..#{head.seq}"
            self.problem = f"record(s) {gap} at the end of the chain were removed"
        elif head.seq == end.seq and head.hash != end.hash:
            where = "the retention anchor" if self._last is None else _where(self._last)
            self.problem = f"{where} was altered: it does not match the chain head"
        elif head.seq < end.seq:
            self.problem = f"records after #{head.seq} were added outside the audit writer"
        return self.problem


COPY_COLUMNS: Final = (*rows.DECISION_COLUMNS, "chain_seq", "prev_hash", "hash")
"""The columns of ``audit_decisions`` the store writes, in :func:`copy_record` order."""


def copy_record(r: LinkedRow) -> tuple[Any, ...]:
    """A linked row as the values of one ``audit_decisions`` row (jsonb columns as JSON text)."""
    return (*rows.decision_values(r.row), r.chain_seq, r.prev_hash, r.hash)


def linked_from_record(record: Mapping[str, Any]) -> LinkedRow:
    """A :class:`LinkedRow` from a database record (jsonb columns as JSON text)."""
    values = {name: record[name] for name in rows.DECISION_COLUMNS}
    values["action_params"] = rows.loads_json(values["action_params"])
    values["result"] = rows.loads_json(values["result"])
    return LinkedRow(
        rows.DecisionRow(**values), record["chain_seq"], record["prev_hash"], record["hash"]
    )
