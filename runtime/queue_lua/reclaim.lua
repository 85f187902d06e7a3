-- Pilothouse work queue: claim entries idle past the visibility timeout, with delivery counts.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] count
-- Returns {id, deliveries, fields} per claimed entry (fields false: the entry was deleted)
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
  'COUNT', ARGV[4])
local out = {}
for _, e in ipairs(claimed[2]) do
  if e and e[1] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 0
    if p[1] then n = p[1][4] end
    out[#out + 1] = {e[1], n, e[2] or false}
  end
end
return out
