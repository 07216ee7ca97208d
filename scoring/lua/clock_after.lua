-- clock_after v1: for each moment x, the first shop-clock value at or after x that the per-second
-- clock index knows (scoring.batch_reads.past_clock), in one call instead of three commands a moment.
-- KEYS[1] the clock index of each second's smallest value (keys.clock_min), KEYS[2] of its largest
-- (keys.clock_max); ARGV the moments, in ms.  Returns one value a moment, in order: the value as a
-- string, or false when no value at or after it is known.
-- In x's own second: its smallest value if that is not before x, else its largest (exact when the
-- second holds two values or fewer); else the smallest value of the first second whose smallest
-- value is at or after x.
local cmin, cmax = KEYS[1], KEYS[2]
local out = {}
for i = 1, #ARGV do
  local x = tonumber(ARGV[i])
  local sec = string.format('%d', math.floor(x / 1000))  -- a member as keys' seconds are written
  local hi = redis.call('ZSCORE', cmax, sec)
  local got = false
  if hi and tonumber(hi) >= x then
    local lo = redis.call('ZSCORE', cmin, sec)
    if lo and tonumber(lo) >= x then got = lo else got = hi end
  else
    local nxt = redis.call('ZRANGEBYSCORE', cmin, ARGV[i], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #nxt > 0 then got = nxt[2] end
  end
  out[i] = got
end
return out
