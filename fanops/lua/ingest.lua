-- ingest v5: dedupe a batch of one shop's events by (room, id) and append the new
-- ones to the shop's partition streams, ONE entry (a msgpack array) per partition, atomically.
-- Needs dedupe.lua before it (realtime.writer prepends it).
-- KEYS[1] stats, KEYS[2 .. 1+S] the partition streams the batch touches,
-- KEYS[2+S ..] the dedupe key of each room in the batch (dedupe.lua)
-- ARGV[1] the most entries a stream may hold (its backlog not applied yet), ARGV[2] seen ttl (s), ARGV[3] receipt time (ms), ARGV[4] S,
-- ARGV[5] the events, one after the other (v4 took four arguments an event): each a 9-byte head
-- (struct '>BI4I4': stream index, 1-based into the S streams; room index, 1-based into the dedupe
-- keys; the payload's length), the id's 10-byte record (first 10 bytes of its SHA-1), the msgpack payload
local maxlen, ttl, t, s = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
-- a full backlog refuses the batch before anything is written (an error does not undo writes): the
-- writer holds it and tries again once the scorers have applied (and trimmed) entries; a cap on the
-- streams that trimmed entries no scorer had applied would lose events
for k = 1, s do
  local len = redis.call('XLEN', KEYS[1 + k])
  if len >= maxlen then
    return redis.error_reply('BACKLOG ' .. KEYS[1 + k] .. ' holds ' .. len ..
      ' entries not applied yet (FANOPS_STREAM_MAXLEN): waiting for the scorers')
  end
end
local parts, counts, n, dups = {}, {}, 0, 0
local seen = {}
for k = 1, s do parts[k] = {}; counts[k] = 0 end
local body = ARGV[5]
local pos, size = 1, #body
while pos <= size do
  local k, ri, plen, at = struct.unpack('>BI4I4', body, pos)
  local d = seen[ri]
  if d == nil then
    d = dd_open(KEYS[1 + s + ri], ttl)
    seen[ri] = d
  end
  if dd_add(d, string.sub(body, at, at + 9)) then
    counts[k] = counts[k] + 1
    parts[k][counts[k]] = string.sub(body, at + 10, at + 9 + plen)
    n = n + 1
  else
    dups = dups + 1
  end
  pos = at + 10 + plen
end
for _, d in pairs(seen) do
  dd_save(d)
end
for k = 1, s do
  if counts[k] > 0 then
    local payload = struct.pack('>BI4', 0xdd, counts[k]) .. table.concat(parts[k])
    redis.call('XADD', KEYS[1 + k], '*', 'e', payload, 'n', counts[k], 't', t)
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'accepted', n)
end
if dups > 0 then
  redis.call('HINCRBY', KEYS[1], 'duplicates', dups)
end
return {n, dups}
