-- dedupe v1 (a library: prepended to the scripts that use it): the event ids a room has seen, as
-- one hash per room holding a linear-hashing table of 12-byte records (the first 12 bytes of the
-- id's SHA-1: 96 bits, so two different ids collide with odds ~n^2/2^97, nil for any room).
-- Field 'm' holds "L s n" (level, split pointer, records); field "<i>" bucket i, its records
-- concatenated. A bucket holds DD_CAP records on average: as the room grows, buckets split one at
-- a time, so a record costs ~13 bytes of Redis whether the room has 100 events or 100,000,000
-- (a set member cost ~40).
local DD_CAP = 64
local DD_REC = 12

local function dd_h32(rec)
  local a, b, c, d = string.byte(rec, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function dd_open(key)
  local t = {key = key, L = 0, s = 0, n = 0, vals = {}, dirty = {}}
  local m = redis.call('HGET', key, 'm')
  if m then
    local L, s, n = string.match(m, '^(%d+) (%d+) (%d+)$')
    t.L, t.s, t.n = tonumber(L), tonumber(s), tonumber(n)
  end
  return t
end

local function dd_get(t, i)
  local v = t.vals[i]
  if v == nil then
    v = redis.call('HGET', t.key, tostring(i)) or ''
    t.vals[i] = v
  end
  return v
end

local function dd_has(v, rec)
  local init = 1
  while true do
    local p = string.find(v, rec, init, true)
    if not p then return false end
    if (p - 1) % DD_REC == 0 then return true end
    init = p + 1
  end
end

local function dd_split(t)
  local m = 2 ^ t.L
  local i = t.s
  local v = dd_get(t, i)
  local lo, hi = {}, {}
  for k = 1, #v, DD_REC do
    local rec = string.sub(v, k, k + DD_REC - 1)
    if dd_h32(rec) % (2 * m) == i then lo[#lo + 1] = rec else hi[#hi + 1] = rec end
  end
  t.vals[i] = table.concat(lo)
  t.vals[i + m] = table.concat(hi)
  t.dirty[i] = true
  t.dirty[i + m] = true
  t.s = t.s + 1
  if t.s == m then t.L = t.L + 1; t.s = 0 end
end

-- add a record; true if it is new, false if the room has seen it
local function dd_add(t, rec)
  local h = dd_h32(rec)
  local m = 2 ^ t.L
  local i = h % m
  if i < t.s then i = h % (2 * m) end
  local v = dd_get(t, i)
  if dd_has(v, rec) then return false end
  t.vals[i] = v .. rec
  t.dirty[i] = true
  t.n = t.n + 1
  while t.n > DD_CAP * (2 ^ t.L + t.s) do dd_split(t) end
  return true
end

local function dd_save(t)
  local args, k = {}, 0
  for i in pairs(t.dirty) do
    args[k + 1] = tostring(i)
    args[k + 2] = t.vals[i]
    k = k + 2
    if k >= 1000 then
      redis.call('HSET', t.key, unpack(args, 1, k))
      k = 0
    end
  end
  args[k + 1] = 'm'
  args[k + 2] = t.L .. ' ' .. t.s .. ' ' .. t.n
  redis.call('HSET', t.key, unpack(args, 1, k + 2))
  t.dirty = {}
end

-- the record of an id, from its SHA-1 in hex (the consumer sends records it made itself)
local function dd_rec_of(id)
  local hex = redis.sha1hex(id)
  local out = {}
  for k = 1, 2 * DD_REC, 2 do out[#out + 1] = string.char(tonumber(string.sub(hex, k, k + 1), 16)) end
  return table.concat(out)
end
