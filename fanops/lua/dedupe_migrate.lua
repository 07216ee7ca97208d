-- A room's seen ids kept by an earlier version as a set of ids (KEYS[1]) move into its dedupe
-- buckets (KEYS[2], dedupe.lua); the set goes. Needs dedupe.lua before it. Returns the ids moved.
-- ARGV[1] ttl (s)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local d = dd_open(KEYS[2], tonumber(ARGV[1]))
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  dd_add(d, dd_rec_of(id))
  moved = moved + 1
end
dd_save(d)
redis.call('DEL', KEYS[1])
return moved
