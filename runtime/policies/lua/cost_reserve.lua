-- CostLimit: check the agent's spend over the rolling hour and reserve an LLM call's estimate,
-- atomically, so replicas together cannot overshoot a limit by more than one in-flight call each.
-- Mirrors pilothouse.runtime.policies.costs.reserve (the pure version, unit-tested).
--
-- KEYS[1]  hash: minute bucket (unix minute) -> spend in nano-USD
-- ARGV[1]  current unix minute
-- ARGV[2]  estimate in nano-USD (integer)
-- ARGV[3]  "1" to reserve when no enforced limit is exceeded, "0" to check only
-- ARGV[4]  key TTL in seconds
-- ARGV[5..] pairs: limit in nano-USD, "1" if enforced ("0" for dryRun)
-- returns  {spent in the window before this call, 1 if reserved else 0}
local minute = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
local oldest = minute - 59
local fields = redis.call('HGETALL', KEYS[1])
local spent = 0
local stale = {}
for i = 1, #fields, 2 do
  if tonumber(fields[i]) < oldest then
    stale[#stale + 1] = fields[i]
  else
    spent = spent + tonumber(fields[i + 1])
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end
if spent < 0 then
  spent = 0
end
local blocked = false
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '1' and spent + estimate > tonumber(ARGV[i]) then
    blocked = true
  end
end
local reserved = 0
if not blocked and ARGV[3] == '1' then
  if estimate > 0 then
    redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
    redis.call('EXPIRE', KEYS[1], ARGV[4])
  end
  reserved = 1
end
return {spent, reserved}
