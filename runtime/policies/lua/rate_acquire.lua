-- RateLimit: GCRA (generic cell rate algorithm) over one or more limits, all or nothing: a
-- request takes a slot from every limit or from none, so a request refused by one policy does
-- not use up another's budget. Mirrors pilothouse.runtime.policies.rates.gcra (unit-tested).
--
-- KEYS[i]  the theoretical arrival time (TAT, microseconds) of limit i
-- ARGV[1]  now in microseconds
-- ARGV[2]  "1" to take the slots when no enforced limit refuses, "0" to check only
-- ARGV[3..] triples per key: emission interval (us), burst tolerance (us), "1" if enforced
-- returns  per key: 0 if allowed, else microseconds until it would be allowed
local now = tonumber(ARGV[1])
local waits = {}
local tats = {}
local blocked = false
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 3
  local interval = tonumber(ARGV[base])
  local tolerance = tonumber(ARGV[base + 1])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  if tat - now <= tolerance then
    waits[i] = 0
  else
    waits[i] = tat - now - tolerance
    if ARGV[base + 2] == '1' then
      blocked = true
    end
  end
  tats[i] = tat + interval
end
if not blocked and ARGV[2] == '1' then
  for i = 1, #KEYS do
    if waits[i] == 0 then
      redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX',
        math.ceil((tats[i] - now) / 1000) + 1000)
    end
  end
end
return waits
