-- The audit trail: one row per request, one per decision (hash-chained per agent), the chain's
-- heads and retention anchors, and parked escalations. Applied by pilothouse.runtime.audit.store
-- under an advisory lock; objects land in the schema first on the search_path.

CREATE TABLE audit_requests (
    request_id      text NOT NULL,
    attempt         text NOT NULL DEFAULT '',  -- '' first run; the approved escalation id on resume
    agent_id        text NOT NULL,
    status          text NOT NULL,
    input           text,
    answer          text,
    user_id         text,
    tenant          text,
    session_id      text,
    refused         boolean NOT NULL DEFAULT false,
    refusal_reason  text,
    policy          text,
    fallback_used   boolean NOT NULL DEFAULT false,
    model           text,
    steps           integer NOT NULL DEFAULT 0,
    input_tokens    integer NOT NULL DEFAULT 0,
    output_tokens   integer NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    latency_ms      double precision NOT NULL DEFAULT 0,
    escalation_id   text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    finished_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, attempt)
);
CREATE INDEX audit_requests_agent_time ON audit_requests (agent_id, finished_at);

CREATE TABLE audit_decisions (
    request_id      text NOT NULL,
    step            integer NOT NULL,
    agent_id        text NOT NULL,
    action          text NOT NULL,
    input           text,
    reasoning       text,
    action_params   jsonb NOT NULL,
    result          jsonb,
    error           text,
    outcome         text NOT NULL,
    policy          text,
    latency_ms      double precision NOT NULL,
    cost_usd        double precision NOT NULL,
    input_tokens    integer NOT NULL,
    output_tokens   integer NOT NULL,
    model           text,
    trace_id        text,
    ts              timestamptz NOT NULL,
    chain_seq       bigint NOT NULL,   -- position in the agent's chain, 1, 2, 3...
    prev_hash       text NOT NULL,     -- hash of the record at chain_seq - 1 (or the anchor)
    hash            text NOT NULL,     -- sha256(prev_hash || canonical record), hex
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, step),
    UNIQUE (agent_id, chain_seq)
);
CREATE INDEX audit_decisions_agent_time ON audit_decisions (agent_id, ts);

-- The last record of each agent's chain; writers lock the row to append (FOR UPDATE).
CREATE TABLE audit_chain_heads (
    agent_id        text PRIMARY KEY,
    seq             bigint NOT NULL,
    hash            text NOT NULL
);

-- Where verification starts once retention deleted the oldest records: the last deleted one.
CREATE TABLE audit_chain_anchors (
    agent_id        text PRIMARY KEY,
    seq             bigint NOT NULL,
    hash            text NOT NULL,
    deleted_before  timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE audit_escalations (
    id              text PRIMARY KEY,
    request_id      text NOT NULL,
    step            integer NOT NULL,
    agent_id        text NOT NULL,
    action          text NOT NULL,
    tool            text,
    params          jsonb NOT NULL,
    policy          text,
    why             text,
    snapshot        jsonb NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    requested_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    decided_at      timestamptz,
    decided_by      text,
    reason          text,
    settled_at      timestamptz,       -- when the runtime acted on the decision (resumed/answered)
    UNIQUE (request_id, step)
);
CREATE INDEX audit_escalations_pending ON audit_escalations (status, expires_at);
CREATE INDEX audit_escalations_agent ON audit_escalations (agent_id, requested_at);

-- Append-only: rows are never updated, and deleted only by the retention job, which sets
-- the transaction-local setting pilothouse.audit_retention = 'on'. This guards against
-- mistakes and casual edits; the hash chain is what makes tampering evident.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
       AND current_setting('pilothouse.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pilothouse audit: % is append-only (% rejected)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'P0001', HINT = 'records are removed only by the retention job';
END
$$;

CREATE TRIGGER audit_requests_append_only BEFORE UPDATE OR DELETE ON audit_requests
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_requests_no_truncate BEFORE TRUNCATE ON audit_requests
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_decisions_append_only BEFORE UPDATE OR DELETE ON audit_decisions
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_decisions_no_truncate BEFORE TRUNCATE ON audit_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_anchors_retention_only BEFORE UPDATE OR DELETE ON audit_chain_anchors
    FOR EACH ROW WHEN (current_setting('pilothouse.audit_retention', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION audit_append_only();

-- Escalations change state once: pending -> approved | denied | expired, and only the
-- decision columns change; then settled_at is set once, when the runtime acted on it.
CREATE FUNCTION audit_escalation_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('pilothouse.audit_retention', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'pilothouse audit: escalations are deleted only by the retention job'
            USING ERRCODE = 'P0001';
    END IF;
    IF (NEW.id, NEW.request_id, NEW.step, NEW.agent_id, NEW.action, NEW.tool, NEW.params,
        NEW.policy, NEW.why, NEW.snapshot, NEW.requested_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.request_id, OLD.step, OLD.agent_id, OLD.action, OLD.tool, OLD.params,
        OLD.policy, OLD.why, OLD.snapshot, OLD.requested_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'pilothouse audit: escalation % is immutable but for its decision', OLD.id
            USING ERRCODE = 'P0001';
    END IF;
    IF OLD.status = 'pending' AND NEW.status <> 'pending' AND NEW.settled_at IS NULL THEN
        RETURN NEW;  -- the decision
    END IF;
    IF OLD.status <> 'pending' AND NEW.status = OLD.status AND OLD.settled_at IS NULL
       AND NEW.settled_at IS NOT NULL
       AND (NEW.decided_at, NEW.decided_by, NEW.reason)
           IS NOT DISTINCT FROM (OLD.decided_at, OLD.decided_by, OLD.reason) THEN
        RETURN NEW;  -- the runtime acted on the decision
    END IF;
    RAISE EXCEPTION 'pilothouse audit: escalation % can only go from pending to a decision, '
        'then be settled once', OLD.id USING ERRCODE = 'P0001';
END
$$;

CREATE TRIGGER audit_escalations_transition BEFORE UPDATE OR DELETE ON audit_escalations
    FOR EACH ROW EXECUTE FUNCTION audit_escalation_transition();
