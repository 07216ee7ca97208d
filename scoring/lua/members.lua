-- members v2: a running scorer says it is alive and gets the partitions it may read, atomically.
-- KEYS[1] zset running scorer -> time (s) of its last round, KEYS[2] hash scorer -> "p,p,..."
-- ARGV[1] name, ARGV[2] alive window (s), ARGV[3] forget after (s), ARGV[4] partitions
-- Times are the server's (TIME), so scorers on hosts whose clocks differ agree on who is alive.
-- The alive scorers split the partitions by their sorted names (p goes to the k-th of n when
-- p % n == k); a scorer takes a partition only if no other alive scorer lists it, and drops
-- what the split moved away at once, so no partition is ever read by two at the same time.
-- Returns {n alive, its place k among them, partition, partition, ...}.
local t = redis.call('TIME')
local name, now = ARGV[1], tonumber(t[1]) + tonumber(t[2]) / 1e6
local window, forget, parts = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now, name)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - forget)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - window, '+inf')
table.sort(live)
local k, alive = 0, {}
for i, m in ipairs(live) do
  alive[m] = true
  if m == name then k = i - 1 end
end
local listed = redis.call('HGETALL', KEYS[2])
local taken = {}
for i = 1, #listed, 2 do
  local m = listed[i]
  if not alive[m] then
    redis.call('HDEL', KEYS[2], m)
  elseif m ~= name then
    for x in string.gmatch(listed[i + 1], '%d+') do taken[tonumber(x)] = true end
  end
end
local out, mine = {#live, k}, {}
for p = 0, parts - 1 do
  if p % #live == k and not taken[p] then
    mine[#mine + 1] = p
    out[#out + 1] = p
  end
end
redis.call('HSET', KEYS[2], name, table.concat(mine, ','))
return out
