-- Pilothouse circuit breaker: one transition of the state machine, atomically, in Redis.
--
-- The same logic as pilothouse.runtime.breaker.transition() (the pure function is the
-- specification; a test feeds both the same event sequences and compares every result).
-- Loaded by pilothouse.runtime.breaker and run with EVALSHA: one round trip per check/record.
--
-- KEYS[1]  the breaker's hash: s = state, f = the sliding window while closed (buckets
--          "start:calls:failures", space separated, oldest first), o = opened at (ms),
--          p = probes let through, t = probe period start (ms)
-- ARGV     event (acquire|success|failure), now_ms, failure_threshold, window_ms,
--          recovery_ms, half_open_max_probes, key_ttl_ms, failure_rate_bp, minimum_calls,
--          bucket_ms
-- Returns  {state, allowed (0/1), probe (0/1), previous state, retry_in_ms, failures, calls}

local key = KEYS[1]
local event = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local window_ms = tonumber(ARGV[4])
local recovery = tonumber(ARGV[5])
local max_probes = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local rate_bp = tonumber(ARGV[8])
local min_calls = tonumber(ARGV[9])
local bucket_ms = tonumber(ARGV[10])

local h = redis.call('HMGET', key, 's', 'f', 'o', 'p', 't')
local state = h[1] or 'closed'
local window = {}
if h[2] then
  for b, c, f in string.gmatch(h[2], '(%-?%d+):(%d+):(%d+)') do
    window[#window + 1] = {tonumber(b), tonumber(c), tonumber(f)}
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

-- The window slid to now, with calls and failures added to now's bucket (breaker._counted).
local function counted(calls, fails)
  local kept = {}
  for _, b in ipairs(window) do
    if now - b[1] < window_ms then kept[#kept + 1] = b end
  end
  local start = now - now % bucket_ms
  local last = kept[#kept]
  if last and last[1] == start then
    kept[#kept] = {start, last[2] + calls, last[3] + fails}
  else
    kept[#kept + 1] = {start, calls, fails}
  end
  return kept
end

local function totals(w)
  local calls, fails = 0, 0
  for _, b in ipairs(w) do
    calls = calls + b[2]
    fails = fails + b[3]
  end
  return calls, fails
end

if event == 'acquire' then
  if state == 'closed' then
    window = counted(1, 0)
    dirty = true
  elseif state == 'open' then
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
    local kept = counted(0, 1)
    local calls, fails = totals(kept)
    if fails > calls then calls = fails end
    if calls >= min_calls and fails >= threshold and fails * 10000 >= rate_bp * calls then
      state = 'open'
      opened_at = now
      window = {}
      probes = 0
      probe_since = 0
    else
      window = kept
    end
    dirty = true
  elseif state == 'half_open' then
    state = 'open'
    opened_at = now
    window = {}
    probes = 0
    probe_since = 0
    dirty = true
  end
elseif event == 'success' then
  if state == 'half_open' then
    state = 'closed'
    window = {}
    opened_at = 0
    probes = 0
    probe_since = 0
    dirty = true
  end
else
  return redis.error_reply('pilothouse breaker: unknown event ' .. tostring(event))
end

if dirty then
  if state == 'closed' and #window == 0 then
    redis.call('DEL', key)
  else
    local parts = {}
    for i, b in ipairs(window) do
      parts[i] = string.format('%d:%d:%d', b[1], b[2], b[3])
    end
    redis.call('HSET', key, 's', state, 'f', table.concat(parts, ' '),
      'o', string.format('%d', opened_at), 'p', string.format('%d', probes),
      't', string.format('%d', probe_since))
    redis.call('PEXPIRE', key, ttl)
  end
end

local calls, fails = totals(window)
return {state, allowed, probe, previous, retry_in, fails, calls}
