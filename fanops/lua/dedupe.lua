-- dedupe v3 (a library: prepended to the scripts that use it): the event ids a room has seen,
-- as 10-byte records (the first 10 bytes of the id's SHA-1: 80 bits, so two different ids of a
-- room of n events collide with odds ~n^2/2^81: 4 in 10^9 at 100 million events) spread by linear
-- hashing over small sets.
-- The room's key (a string "L s n": level, split pointer, records) names the buckets
-- "<key>:<i>", i < 2^L + s; a bucket is a set of DD_CAP records on average (Redis keeps a set
-- that small as one packed listpack, ~12 bytes a record; a set member of the hashtable kind costs
-- ~40). As the room grows, buckets split one at a time, so a record costs ~14 bytes whether the
-- room has 100 events or 100,000,000, and a lookup is one SADD into a small set.
-- Every bucket holds the empty string as well, so that it exists (with its TTL) from its split on.
-- TTL: the room's key expires ttl after the room's last batch (set each batch); the buckets get
-- 1.5 ttl when made, and again, all of them, whenever ttl/2 has passed since they last did
-- (the 4th number of the key, Redis TIME seconds): while the room gets events no bucket lapses,
-- and after its last one every bucket outlives the key.
local DD_CAP = 40
local DD_REC = 10

local function dd_h32(rec)
  local a, b, c, d = string.byte(rec, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function dd_bucket_key(t, i)
  return t.key .. ':' .. string.format('%d', i)
end

-- the table's buckets (2^L + s) and the records they hold on average before the next split
local function dd_buckets(t) return 2 ^ t.L + t.s end
local function dd_capacity(t) return DD_CAP * dd_buckets(t) end

-- the bucket of a record of hash h: its low L bits, or L + 1 below the split pointer
local function dd_index(t, h)
  local m = 2 ^ t.L
  local i = h % m
  if i < t.s then i = h % (2 * m) end
  return i
end

local function dd_open(key, ttl)
  local now = tonumber(redis.call('TIME')[1])
  local t = {key = key, ttl = ttl, bttl = math.floor(ttl * 3 / 2), L = 0, s = 0, n = 0, r = now}
  local m = redis.call('GET', key)
  if m then
    local L, s, n, r = string.match(m, '^(%d+) (%d+) (%d+) ?(%d*)$')
    t.L, t.s, t.n, t.r = tonumber(L), tonumber(s), tonumber(n), tonumber(r) or 0
  else
    local b0 = dd_bucket_key(t, 0)
    redis.call('SADD', b0, '')
    redis.call('EXPIRE', b0, t.bttl)
  end
  t.refresh = (now - t.r) * 2 > ttl
  if t.refresh then t.r = now end
  return t
end

local function dd_split(t)
  local m = 2 ^ t.L
  local i = t.s
  local from = dd_bucket_key(t, i)
  local lo, hi = {''}, {''}
  for _, rec in ipairs(redis.call('SMEMBERS', from)) do
    if rec ~= '' then
      if dd_h32(rec) % (2 * m) == i then lo[#lo + 1] = rec else hi[#hi + 1] = rec end
    end
  end
  local to = dd_bucket_key(t, i + m)
  redis.call('DEL', from)
  redis.call('SADD', from, unpack(lo))
  redis.call('SADD', to, unpack(hi))
  redis.call('EXPIRE', from, t.bttl)
  redis.call('EXPIRE', to, t.bttl)
  t.s = t.s + 1
  if t.s == m then t.L = t.L + 1; t.s = 0 end
end

-- add a record; true if it is new, false if the room has seen it
local function dd_add(t, rec)
  if redis.call('SADD', dd_bucket_key(t, dd_index(t, dd_h32(rec))), rec) == 0 then return false end
  t.n = t.n + 1
  while t.n > dd_capacity(t) do dd_split(t) end
  return true
end

local function dd_save(t)
  if t.refresh then
    for i = 0, dd_buckets(t) - 1 do redis.call('EXPIRE', dd_bucket_key(t, i), t.bttl) end
  end
  redis.call('SET', t.key, string.format('%d %d %d %d', t.L, t.s, t.n, t.r), 'EX', t.ttl)
end

-- the record of an id, from its SHA-1 in hex (the consumer sends records it made itself)
local function dd_rec_of(id)
  local hex = redis.sha1hex(id)
  local out = {}
  for k = 1, 2 * DD_REC, 2 do out[#out + 1] = string.char(tonumber(string.sub(hex, k, k + 1), 16)) end
  return table.concat(out)
end
