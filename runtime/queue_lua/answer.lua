-- Pilothouse work queue: store results and notify waiting callers, first answer of an entry only.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream; per item i: KEYS[2i] its request's state, KEYS[2i+1] its entry's answer key
-- ARGV[1] group, ARGV[2] TTL; per item: entry id, request id, state value, reply channel,
-- audit payload. Returns per item 1 (answered now), 0 (another delivery of the entry answered
-- first: nothing written) or -1 (the entry is no longer pending: acknowledged meanwhile).
local out = {}
local items = (#ARGV - 2) / 5
for i = 1, items do
  local a = 2 + (i - 1) * 5
  local id = ARGV[a + 1]
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    out[i] = -1
  elseif redis.call('SET', KEYS[2 * i + 1], ARGV[a + 5], 'NX', 'EX', ARGV[2]) then
    redis.call('SET', KEYS[2 * i], ARGV[a + 3], 'EX', ARGV[2])
    if ARGV[a + 4] ~= '' then
      redis.call('PUBLISH', ARGV[a + 4], ARGV[a + 2] .. ' ' .. ARGV[a + 3])
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
