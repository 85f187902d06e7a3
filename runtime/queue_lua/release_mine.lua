-- Pilothouse work queue: give back every entry a consumer holds.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream, KEYS[2] errors hash; ARGV[1] group, ARGV[2] consumer, ARGV[3] idle ms,
-- ARGV[4] error ('' for none). Gives back every entry pending for this consumer.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 10000, ARGV[2])
if #pending == 0 then return 0 end
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for _, p in ipairs(pending) do
  args[#args + 1] = p[1]
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], p[1], ARGV[4]) end
end
args[#args + 1] = 'IDLE'
args[#args + 1] = ARGV[3]
args[#args + 1] = 'JUSTID'
redis.call(unpack(args))
return #pending
