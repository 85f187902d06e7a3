-- Pilothouse work queue: acknowledge answered entries.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream, KEYS[2] errors hash, KEYS[2+i] answer key of item i; ARGV[1] group,
-- ARGV[1+i] entry id of item i. Acknowledges and forgets answered entries.
for i = 1, #KEYS - 2 do
  local id = ARGV[1 + i]
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', KEYS[2 + i])
end
return #KEYS - 2
