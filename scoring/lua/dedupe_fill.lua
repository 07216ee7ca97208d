-- A chunk of an archive's event ids back into the room's dedupe table (scoring/reopen.py, before it
-- opens the room again: chunks, so that Redis never stops for a whole show's ids in one call).
-- Needs dedupe.lua before it. KEYS[1] the room's dedupe key (keys.seen); ARGV[1] its ttl (s),
-- ARGV[2 ..] the ids' dedupe records. Returns how many were new to the table.
local d = dd_open(KEYS[1], tonumber(ARGV[1]))
local new = 0
for i = 2, #ARGV do
  if dd_add(d, ARGV[i]) then new = new + 1 end
end
dd_save(d)
return new
