-- Pilothouse work queue: store the final answer of a denied or expired escalation.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] state; ARGV[1] escalation id, ARGV[2] value, ARGV[3] TTL. Stores the final answer of
-- a request whose escalation was denied or expired, unless it moved on meanwhile.
local cur = redis.call('GET', KEYS[1])
if cur and not (string.sub(cur, 1, 1) == 'd'
    and string.find(cur, '"escalation_id":"' .. ARGV[1] .. '"', 1, true)) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
