-- Pilothouse work queue: store results and notify waiting callers, first answer of an entry only.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream, KEYS[2] the ledger of answered requests (what `audit verify` checks the audit
-- trail against); per item i, from k = 2 + 4(i-1): KEYS[k+1] its request's state, KEYS[k+2] its
-- entry's answer key, KEYS[k+3] its request's body hash (kept as long as the result),
-- KEYS[k+4] its request's step checkpoint (deleted: the request is answered)
-- ARGV[1] group, ARGV[2] TTL, ARGV[3] ledger bound; per item: entry id, request id, state
-- value, reply channel, audit payload. Returns per item 1 (answered now), 0 (another delivery
-- of the entry answered first: nothing written) or -1 (the entry is no longer pending:
-- acknowledged meanwhile).
local out = {}
local items = (#ARGV - 3) / 5
for i = 1, items do
  local a = 3 + (i - 1) * 5
  local k = 2 + (i - 1) * 4
  local id = ARGV[a + 1]
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    out[i] = -1
  elseif redis.call('SET', KEYS[k + 2], ARGV[a + 5], 'NX', 'EX', ARGV[2]) then
    redis.call('SET', KEYS[k + 1], ARGV[a + 3], 'EX', ARGV[2])
    redis.call('EXPIRE', KEYS[k + 3], ARGV[2])
    redis.call('DEL', KEYS[k + 4])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'r', ARGV[a + 2], 'e', id)
    if ARGV[a + 4] ~= '' then
      redis.call('PUBLISH', ARGV[a + 4], ARGV[a + 2] .. ' ' .. ARGV[a + 3])
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
