-- made_trim v1: the entries an expiry pass looked at leave the head of a minute's list
-- (fanops.expiry), only if they are still its head (another pass may have trimmed them).
-- KEYS[1] the minute's list (keys.made_bucket), KEYS[2] keys.made; ARGV[1] the minute, ARGV[2]
-- the marker and ARGV[3] the "=<rest>" in force after them, ARGV[4..] the entries as read.
-- A list left with a ".<viewer>" at its head gets its "=<rest>" back in front, and one left
-- with no marker at its head the marker; an empty one leaves the minutes.
-- Returns 1 (trimmed) or 0 (the head was not what was read: left as it is).
local n = #ARGV - 3
if n > 0 then
  local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
  if #head ~= n then return 0 end
  for i = 1, n do
    if head[i] ~= ARGV[i + 3] then return 0 end
  end
  redis.call('LTRIM', KEYS[1], n, -1)
  local first = redis.call('LINDEX', KEYS[1], 0)
  if first and string.sub(first, 1, 1) == '.' and ARGV[3] ~= '' then
    redis.call('LPUSH', KEYS[1], ARGV[3])
    first = ARGV[3]
  end
  if first and string.sub(first, 1, 1) ~= '@' then redis.call('LPUSH', KEYS[1], ARGV[2]) end
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
