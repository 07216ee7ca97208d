-- ingest v4: dedupe a batch of one shop's events by (room, id) and append the new
-- ones to the shop's partition streams, ONE entry (a msgpack array) per partition, atomically.
-- Needs dedupe.lua before it (realtime.writer prepends it).
-- KEYS[1] stats, KEYS[2 .. 1+S] the partition streams the batch touches,
-- KEYS[2+S ..] the dedupe key of each room in the batch (dedupe.lua)
-- ARGV[1] the most entries a stream may hold (its backlog not applied yet), ARGV[2] seen ttl (s), ARGV[3] receipt time (ms), ARGV[4] S,
-- then per event: stream index (1-based into the S streams), room index (1-based into the
-- dedupe keys), the id's 10-byte record (first 10 bytes of its SHA-1), msgpack bytes
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
for i = 5, #ARGV, 4 do
  local ri = tonumber(ARGV[i + 1])
  local d = seen[ri]
  if d == nil then
    d = dd_open(KEYS[1 + s + ri], ttl)
    seen[ri] = d
  end
  if dd_add(d, ARGV[i + 2]) then
    local k = tonumber(ARGV[i])
    counts[k] = counts[k] + 1
    parts[k][counts[k]] = ARGV[i + 3]
    n = n + 1
  else
    dups = dups + 1
  end
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
