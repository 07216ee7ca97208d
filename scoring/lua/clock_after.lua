-- clock_after v2: for each moment x, the first shop-clock value at or after x that the per-second
-- clock index knows (scoring.batch_reads.past_clock), in one call instead of three commands a moment.
-- KEYS[1] the clock index of each second's smallest value (keys.clock_min), KEYS[2] of its largest
-- (keys.clock_max); ARGV the moments, in ms, ascending.  Returns one value a moment, in order: the
-- value as a string, or false when no value at or after it is known.
-- In x's own second: its smallest value if that is not before x, else its largest (exact when the
-- second holds two values or fewer); else the smallest value of the first second whose smallest
-- value is at or after x.  The seconds' values are read for all moments at once (ZMSCORE, CHUNK
-- seconds a call); a moment past its second's values reuses the previous such moment's answer
-- when that answer is not before it (the moments ascend), else asks the index.
local cmin, cmax = KEYS[1], KEYS[2]
local CHUNK = 512
local secs, sec_of = {}, {}
for i = 1, #ARGV do
  local s = string.format('%d', math.floor(tonumber(ARGV[i]) / 1000))  -- as keys' seconds are written
  sec_of[i] = s
  if secs[#secs] ~= s then secs[#secs + 1] = s end
end
local function scores(key)
  local out = {}
  for s = 1, #secs, CHUNK do
    local e = math.min(#secs, s + CHUNK - 1)
    local got = redis.call('ZMSCORE', key, unpack(secs, s, e))
    for j = s, e do out[secs[j]] = got[j - s + 1] end
  end
  return out
end
local his, los = scores(cmax), scores(cmin)
local out = {}
local prev = nil  -- the last answer read from the index past a second, as a number, and as read
local prev_raw = false
for i = 1, #ARGV do
  local x = tonumber(ARGV[i])
  local hi = his[sec_of[i]]
  local got = false
  if hi and tonumber(hi) >= x then
    local lo = los[sec_of[i]]
    if lo and tonumber(lo) >= x then got = lo else got = hi end
  elseif prev and prev >= x then
    got = prev_raw
  else
    local nxt = redis.call('ZRANGEBYSCORE', cmin, ARGV[i], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #nxt > 0 then
      got = nxt[2]
      prev, prev_raw = tonumber(nxt[2]), nxt[2]
    end
  end
  out[i] = got
end
return out
