-- CostLimit: check the spends over the rolling hour (the agent's, and each end user's a limit
-- is per user) and reserve an LLM call's estimate in all of them, atomically, so replicas
-- together cannot overshoot a limit by more than one in-flight call each.
-- Mirrors pilothouse.runtime.policies.costs.reserve_keys (the pure version, unit-tested).
--
-- KEYS[1..n] hashes: minute bucket (unix minute) -> spend in nano-USD
-- ARGV[1]  current unix minute
-- ARGV[2]  estimate in nano-USD (integer)
-- ARGV[3]  "1" to reserve when no enforced limit is exceeded, "0" to check only
-- ARGV[4]  key TTL in seconds
-- ARGV[5..] triples: index of the key (1-based), limit in nano-USD, "1" if enforced ("0" for
--          dryRun)
-- returns  {spent of KEYS[1] in the window before this call, ..., of KEYS[n], 1 if reserved}
local minute = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
local oldest = minute - 59
local spent = {}
for k = 1, #KEYS do
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
for i = 5, #ARGV, 3 do
  local k = tonumber(ARGV[i])
  if ARGV[i + 2] == '1' and spent[k] + estimate > tonumber(ARGV[i + 1]) then
    blocked = true
  end
end
local reserved = 0
if not blocked and ARGV[3] == '1' then
  if estimate > 0 then
    for k = 1, #KEYS do
      redis.call('HINCRBY', KEYS[k], ARGV[1], ARGV[2])
      redis.call('EXPIRE', KEYS[k], ARGV[4])
    end
  end
  reserved = 1
end
spent[#KEYS + 1] = reserved
return spent
