-- dedupe_fill v4: a chunk of an archive's event ids back into the room's dedupe table
-- (scoring/reopen.py, before it opens the room again: chunks, so that Redis never stops for a whole
-- show's ids in one call). Needs dedupe.lua before it. KEYS[1] the room's dedupe key (keys.seen);
-- ARGV[1] its ttl (s), ARGV[2] how many records this call and the later ones bring, ARGV[3 ..] the
-- ids' dedupe records, best in the order of their hash's bits read from the lowest
-- (reopen.fill_order): a bucket's records then come together, one SADD each.
-- The table first grows towards holding them all (at most FILL_SPLITS splits a call, while its
-- buckets are small: records then go straight to the bucket they stay in), and to hold this chunk;
-- records already in it are not counted twice (a fill again after a crash does not double it).
-- Returns how many were new to the table. The table ends as dd_add would leave it.
local FILL_SPLITS = 2000
local d = dd_open(KEYS[1], tonumber(ARGV[1]))
local chunk = #ARGV - 2
local target = math.max(d.n + chunk, tonumber(ARGV[2]))
local splits = 0
while target > dd_capacity(d) and (splits < FILL_SPLITS or d.n + chunk > dd_capacity(d)) do
  dd_split(d)
  splits = splits + 1
end
local groups, order = {}, {}
for i = 3, #ARGV do
  local rec = ARGV[i]
  local b = dd_index(d, dd_h32(rec))
  local g = groups[b]
  if not g then
    g = {}
    groups[b] = g
    order[#order + 1] = b
  end
  g[#g + 1] = rec
end
local new = 0
for _, b in ipairs(order) do
  local g, key = groups[b], dd_bucket_key(d, b)
  for k = 1, #g, 1000 do
    new = new + redis.call('SADD', key, unpack(g, k, math.min(k + 999, #g)))
  end
end
d.n = d.n + new
while d.n > dd_capacity(d) do dd_split(d) end
dd_save(d)
return new
