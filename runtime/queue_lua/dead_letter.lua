-- Pilothouse work queue: move an entry to the dead-letter stream with the reason.
-- Loaded by pilothouse.runtime.queue and run with EVALSHA: one round trip, atomic.
--
-- KEYS[1] stream, KEYS[2] dead, KEYS[3] errors hash, KEYS[4] state ('' item: no request id),
-- KEYS[5] the entry's answer key (an entry answered before it failed keeps its answer)
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] reason, ARGV[4] deliveries, ARGV[5] consumer,
-- ARGV[6] dead maxlen, ARGV[7] result value ('' for none), ARGV[8] result TTL,
-- ARGV[9] reply channel, ARGV[10] request id, ARGV[11..] the entry's fields
local reason = ARGV[3]
local last = redis.call('HGET', KEYS[3], ARGV[2])
if last and not string.find(reason, last, 1, true) then
  reason = reason .. ' (last error: ' .. last .. ')'
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'entry', ARGV[2], 'reason', reason,
    'deliveries', ARGV[4], 'consumer', ARGV[5], unpack(ARGV, 11))
  if ARGV[7] ~= '' and redis.call('EXISTS', KEYS[5]) == 0 then
    redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[8])
    if ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[9], ARGV[10] .. ' ' .. ARGV[7]) end
  end
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[5])
return {acked, reason}
