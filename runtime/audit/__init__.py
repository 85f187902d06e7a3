"""The audit trail in PostgreSQL: decisions, request summaries, escalations.

``store`` is the only module that talks to PostgreSQL (schema migrations from ``sql/`` under
an advisory lock, hash-chained appends, queries); ``writers`` batches records into it and
spools them to local disk while it is down; ``rows`` shapes what is stored (redaction);
``chain`` and ``verification`` make tampering evident; ``retention`` deletes old records
without breaking the chain; ``history`` reads decisions back. See docs/governance.md.
"""

from pilothouse.runtime.audit.rows import AuditSettings
from pilothouse.runtime.audit.store import AuditStore, AuditStoreError
from pilothouse.runtime.audit.writers import AuditWriter

__all__ = ["AuditSettings", "AuditStore", "AuditStoreError", "AuditWriter"]
