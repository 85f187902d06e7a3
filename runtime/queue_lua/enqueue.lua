-- Pilothouse work queue: add a request unless its id is known or the backlog is at its bound.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream, KEYS[2] state, KEYS[3] body hash; ARGV[1] max backlog (0: no bound),
-- ARGV[2] state value, ARGV[3] state TTL seconds, ARGV[4] escalation id ('' unless this resumes
-- an approved escalation), ARGV[5] the body's hash, ARGV[6..] the entry's fields.
-- Returns {'ok', entry id, backlog}, {'full', backlog}, {'known', state} (the same body sent
-- again, or a request accepted before hashes were stored) or {'conflict', stored hash}.
local cur = redis.call('GET', KEYS[2])
if cur then
  local stored = redis.call('GET', KEYS[3])
  if stored and stored ~= ARGV[5] then return {'conflict', stored} end
end
if cur and not (ARGV[4] ~= '' and string.sub(cur, 1, 1) == 'd'
    and string.find(cur, '"status":"escalated"', 1, true)
    and string.find(cur, '"escalation_id":"' .. ARGV[4] .. '"', 1, true)) then
  return {'known', cur}
end
local n = redis.call('XLEN', KEYS[1])
local bound = tonumber(ARGV[1])
if bound > 0 and n >= bound then return {'full', n} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[3])
return {'ok', id, n + 1}
