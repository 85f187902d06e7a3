-- Pilothouse work queue: add a request unless its id is known or the backlog is at its bound.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream, KEYS[2] state; ARGV[1] max backlog (0: no bound), ARGV[2] state value,
-- ARGV[3] state TTL seconds, ARGV[4] escalation id ('' unless this resumes an approved
-- escalation), ARGV[5..] the entry's fields
local cur = redis.call('GET', KEYS[2])
if cur and not (ARGV[4] ~= '' and string.sub(cur, 1, 1) == 'd'
    and string.find(cur, '"status":"escalated"', 1, true)
    and string.find(cur, '"escalation_id":"' .. ARGV[4] .. '"', 1, true)) then
  return {'known', cur}
end
local n = redis.call('XLEN', KEYS[1])
local bound = tonumber(ARGV[1])
if bound > 0 and n >= bound then return {'full', n} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return {'ok', id, n + 1}
