-- Pilothouse circuit breaker: one transition of the state machine, atomically, in Redis.
--
-- The same logic as pilothouse.runtime.breaker.transition() (the pure function is the
-- specification; a test feeds both the same event sequences and compares every result).
-- Loaded by pilothouse.runtime.breaker and run with EVALSHA: one round trip per check/record.
--
-- KEYS[1]  the breaker's hash: s = state, f = failure times (ms, space separated),
--          o = opened at (ms), p = probes let through, t = probe period start (ms)
-- ARGV     event (acquire|success|failure), now_ms, failure_threshold, window_ms,
--          recovery_ms, half_open_max_probes, key_ttl_ms
-- Returns  {state, allowed (0/1), probe (0/1), previous state, retry_in_ms, failures}

local key = KEYS[1]
local event = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local recovery = tonumber(ARGV[5])
local max_probes = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])

local h = redis.call('HMGET', key, 's', 'f', 'o', 'p', 't')
local state = h[1] or 'closed'
local failures = {}
if h[2] then
  for ts in string.gmatch(h[2], '%-?%d+') do
    failures[#failures + 1] = tonumber(ts)
  end
end
local opened_at = tonumber(h[3] or '0') or 0
local probes = tonumber(h[4] or '0') or 0
local probe_since = tonumber(h[5] or '0') or 0

local previous = state
local allowed = 1
local probe = 0
local retry_in = 0
local dirty = false

if event == 'acquire' then
  if state == 'open' then
    if now >= opened_at + recovery then
      state = 'half_open'
      probes = 1
      probe_since = now
      probe = 1
      dirty = true
    else
      allowed = 0
      retry_in = opened_at + recovery - now
    end
  elseif state == 'half_open' then
    if probes < max_probes then
      probes = probes + 1
      probe = 1
      dirty = true
    elseif now >= probe_since + recovery then
      probes = 1
      probe_since = now
      probe = 1
      dirty = true
    else
      allowed = 0
      retry_in = probe_since + recovery - now
    end
  end
elseif event == 'failure' then
  if state == 'closed' then
    local kept = {}
    for _, ts in ipairs(failures) do
      if now - ts < window then
        kept[#kept + 1] = ts
      end
    end
    kept[#kept + 1] = now
    if #kept >= threshold then
      state = 'open'
      opened_at = now
      failures = {}
      probes = 0
      probe_since = 0
    else
      failures = kept
    end
    dirty = true
  elseif state == 'half_open' then
    state = 'open'
    opened_at = now
    failures = {}
    probes = 0
    probe_since = 0
    dirty = true
  end
elseif event == 'success' then
  if state == 'half_open' then
    state = 'closed'
    failures = {}
    opened_at = 0
    probes = 0
    probe_since = 0
    dirty = true
  end
else
  return redis.error_reply('pilothouse breaker: unknown event ' .. tostring(event))
end

if dirty then
  if state == 'closed' and #failures == 0 then
    redis.call('DEL', key)
  else
    local parts = {}
    for i, ts in ipairs(failures) do
      parts[i] = string.format('%d', ts)
    end
    redis.call('HSET', key, 's', state, 'f', table.concat(parts, ' '),
      'o', string.format('%d', opened_at), 'p', string.format('%d', probes),
      't', string.format('%d', probe_since))
    redis.call('PEXPIRE', key, ttl)
  end
end

return {state, allowed, probe, previous, retry_in, #failures}
