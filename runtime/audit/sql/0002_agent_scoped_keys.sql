-- Request ids are chosen by callers and scoped to one agent's queue: two agents may both
-- answer a request "req-1". The keys of the audit trail include the agent, so one agent's
-- records never count as duplicates of (and never hide) another's.
ALTER TABLE audit_decisions
    DROP CONSTRAINT audit_decisions_pkey,
    ADD PRIMARY KEY (agent_id, request_id, step);
CREATE INDEX audit_decisions_request ON audit_decisions (request_id, step);

ALTER TABLE audit_requests
    DROP CONSTRAINT audit_requests_pkey,
    ADD PRIMARY KEY (agent_id, request_id, attempt);
CREATE INDEX audit_requests_request ON audit_requests (request_id);

ALTER TABLE audit_escalations
    DROP CONSTRAINT audit_escalations_request_id_step_key,
    ADD UNIQUE (agent_id, request_id, step);
