-- ingest v1: dedupe a batch of one shop's events by (room, id) and append the
-- new ones to the shop's stream as ONE entry (a msgpack array), atomically.
-- KEYS[1] stream, KEYS[2] stats, KEYS[3..] the seen-set of each room in the batch
-- ARGV[1] maxlen, ARGV[2] seen ttl (s), ARGV[3] receipt time (ms),
-- then per event: room index (1-based into KEYS[3..]), event id, msgpack bytes
local maxlen, ttl, t = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local parts, n, dups = {}, 0, 0
for i = 4, #ARGV, 3 do
  local seen = KEYS[2 + tonumber(ARGV[i])]
  if redis.call('SADD', seen, ARGV[i + 1]) == 1 then
    n = n + 1
    parts[n] = ARGV[i + 2]
  else
    dups = dups + 1
  end
end
for k = 3, #KEYS do
  redis.call('EXPIRE', KEYS[k], ttl)
end
local id = false
if n > 0 then
  local payload = struct.pack('>BI4', 0xdd, n) .. table.concat(parts)
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'e', payload, 'n', n, 't', t)
  redis.call('HINCRBY', KEYS[2], 'accepted', n)
end
if dups > 0 then
  redis.call('HINCRBY', KEYS[2], 'duplicates', dups)
end
return {n, dups, id}
