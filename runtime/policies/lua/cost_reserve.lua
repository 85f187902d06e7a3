-- CostLimit: check the spends over their rolling windows (the agent's hour and day, and each end
-- user's when a limit is per user) and reserve an LLM call's estimate in all of them,
-- atomically, so replicas together cannot overshoot a limit by more than one in-flight call each.
-- Mirrors pilothouse.runtime.policies.costs.reserve_keys (the pure version, unit-tested).
--
-- KEYS[1..n] hashes: bucket (unix minute, or unix hour for a daily spend) -> spend in nano-USD
-- ARGV[1]  estimate in nano-USD (integer)
-- ARGV[2]  "1" to reserve when no enforced limit is exceeded, "0" to check only
-- ARGV[3]  n, the number of keys
-- ARGV[4..3+3n] per key: current bucket, buckets in its window, key TTL in seconds
-- ARGV[4+3n..] triples: index of the key (1-based), limit in nano-USD, "1" if enforced ("0" for
--          dryRun)
-- returns  {spent of KEYS[1] in its window before this call, ..., of KEYS[n], 1 if reserved}
local estimate = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local spent = {}
for k = 1, n do
  local base = 4 + 3 * (k - 1)
  local oldest = tonumber(ARGV[base]) - tonumber(ARGV[base + 1]) + 1
  local fields = redis.call('HGETALL', KEYS[k])
  local total = 0
  local stale = {}
  for i = 1, #fields, 2 do
    if tonumber(fields[i]) < oldest then
      stale[#stale + 1] = fields[i]
    else
      total = total + tonumber(fields[i + 1])
    end
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[k], unpack(stale))
  end
  if total < 0 then
    total = 0
  end
  spent[k] = total
end
local blocked = false
for i = 4 + 3 * n, #ARGV, 3 do
  local k = tonumber(ARGV[i])
  if ARGV[i + 2] == '1' and spent[k] + estimate > tonumber(ARGV[i + 1]) then
    blocked = true
  end
end
local reserved = 0
if not blocked and ARGV[2] == '1' then
  if estimate > 0 then
    for k = 1, n do
      local base = 4 + 3 * (k - 1)
      redis.call('HINCRBY', KEYS[k], ARGV[base], estimate)
      redis.call('EXPIRE', KEYS[k], ARGV[base + 2])
    end
  end
  reserved = 1
end
spent[n + 1] = reserved
return spent
