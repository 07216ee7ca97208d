-- apply v2: write one scorer batch's effects atomically, or nothing.
-- KEYS[1] the shop's stats key (routes the call to the shop's slot; every key
-- below carries the same {shop} hash tag).  ARGV[1] a msgpack map, the write set;
-- ARGV[2..] the packed states it names by index (cmsgpack has no binary type):
--   group, consumer, acks {{stream, id, id, ...}, ...}   the entries this batch covers, by stream
--   cas   {{key, field, old index|false, new index}} each viewer read, unchanged since, or abort
--   hset  {{key, field, value or index}}   hincr {{key, field, int}}   hfloat {{key, field, float}}
--   hmax  {{key, field, value}}   zadd {{key, member, score}}  zrem {{key, member}}
--   xadd  {{key, maxlen, f1, v1, ...}}   lpush {{key, value, keep}}
--   task_new {{taskkey, queue, roomkey, sentkey, member, viewer, prio, min_sent, state, f1, v1, ...}}
--   task_move {{taskkey, qprefix, roomkey, member, to, from1, from2, ...}}
--   task_prio {{taskkey, qprefix, member, prio, f1, v1, ...}}
--   task_del {{taskkey, qprefix, roomkey, member}}   (only a task no operator has sent or skipped)
--   scount {{setkey, member, hashkey, field}}   count a member once: +1 if new to the set
--   zremrange {{key, below}}   drop members scored below a value
--   task_withdraw {{taskkey, qprefix, roomkey, member, consent_ts}}   an open task made before a
--       refusal of DMs is withdrawn (rooms whose records are archived)
-- Returns {"ok"}, {"stale", id} (an entry is no longer ours), {"conflict", key, field}
-- or {"locked", key} (a rebuild is running).
local w = cmsgpack.unpack(ARGV[1])

if w.lock and redis.call('EXISTS', w.lock) == 1 then
  return {'locked', w.lock}  -- the shop is being rebuilt under new settings: try again soon
end

for _, a in ipairs(w.acks or {}) do
  for i = 2, #a do
    local p = redis.call('XPENDING', a[1], w.group, a[i], a[i], 1)
    if #p == 0 or p[1][2] ~= w.consumer then
      return {'stale', a[i]}
    end
  end
end
for _, c in ipairs(w.cas or {}) do
  local cur = redis.call('HGET', c[1], c[2])
  local old = c[3] and ARGV[c[3]]
  if cur ~= old then
    return {'conflict', c[1], c[2]}
  end
end

for _, c in ipairs(w.cas or {}) do redis.call('HSET', c[1], c[2], ARGV[c[4]]) end
for _, c in ipairs(w.hset or {}) do
  local v = c[3]
  if type(v) == 'number' then v = ARGV[v] end
  redis.call('HSET', c[1], c[2], v)
end
for _, c in ipairs(w.hincr or {}) do redis.call('HINCRBY', c[1], c[2], c[3]) end
for _, c in ipairs(w.hfloat or {}) do redis.call('HINCRBYFLOAT', c[1], c[2], tostring(c[3])) end
for _, c in ipairs(w.hmax or {}) do
  local cur = tonumber(redis.call('HGET', c[1], c[2]) or '-1')
  if tonumber(c[3]) > cur then redis.call('HSET', c[1], c[2], c[3]) end
end
for _, c in ipairs(w.zadd or {}) do
  if c[4] then redis.call('ZADD', c[1], c[4], c[3], c[2]) else redis.call('ZADD', c[1], c[3], c[2]) end
end
for _, c in ipairs(w.zrem or {}) do redis.call('ZREM', c[1], c[2]) end
for _, c in ipairs(w.xadd or {}) do
  local args = {c[1], 'MAXLEN', '~', c[2], '*'}
  for i = 3, #c do args[#args + 1] = c[i] end
  redis.call('XADD', unpack(args))
end
for _, c in ipairs(w.zremrange or {}) do redis.call('ZREMRANGEBYSCORE', c[1], '-inf', '(' .. c[2]) end
for _, c in ipairs(w.scount or {}) do
  if redis.call('SADD', c[1], c[2]) == 1 then redis.call('HINCRBY', c[3], c[4], 1) end
end
for _, c in ipairs(w.lpush or {}) do
  redis.call('LPUSH', c[1], c[2])
  redis.call('LTRIM', c[1], 0, c[3] - 1)
end

local made = 0
for _, t in ipairs(w.task_new or {}) do
  if redis.call('EXISTS', t[1]) == 0 then
    local sent = tonumber(redis.call('ZSCORE', t[4], t[6]) or '-1e300')
    if sent < t[8] then
      local args = {t[1], 'state', t[9]}
      for i = 10, #t do args[#args + 1] = t[i] end
      redis.call('HSET', unpack(args))
      redis.call('ZADD', t[2], t[7], t[5])
      redis.call('HINCRBY', t[3], 'f:' .. t[9], 1)
      made = made + 1
    end
  end
end
for _, t in ipairs(w.task_move or {}) do
  local st = redis.call('HGET', t[1], 'state')
  if st then
    for i = 6, #t do
      if st == t[i] then
        local prio = redis.call('ZSCORE', t[2] .. st, t[4])
        redis.call('ZREM', t[2] .. st, t[4])
        redis.call('ZADD', t[2] .. t[5], prio or 0, t[4])
        redis.call('HSET', t[1], 'state', t[5])
        redis.call('HDEL', t[1], 'holder', 'lease_until')
        redis.call('HINCRBY', t[3], 'f:' .. st, -1)
        redis.call('HINCRBY', t[3], 'f:' .. t[5], 1)
        break
      end
    end
  end
end
for _, t in ipairs(w.task_prio or {}) do
  local st = redis.call('HGET', t[1], 'state')
  if st == 'pending' or st == 'claimed' then
    redis.call('ZADD', t[2] .. st, 'XX', t[4], t[3])
    if #t > 4 then
      local args = {t[1]}
      for i = 5, #t do args[#args + 1] = t[i] end
      redis.call('HSET', unpack(args))
    end
  end
end

for _, t in ipairs(w.task_withdraw or {}) do
  local h = redis.call('HMGET', t[1], 'state', 'task_at')
  local st, at = h[1], tonumber(h[2] or '-1')
  if (st == 'pending' or st == 'claimed') and at < t[5] then
    local prio = redis.call('ZSCORE', t[2] .. st, t[4])
    redis.call('ZREM', t[2] .. st, t[4])
    redis.call('ZADD', t[2] .. 'withdrawn', prio or 0, t[4])
    redis.call('HSET', t[1], 'state', 'withdrawn')
    redis.call('HDEL', t[1], 'holder', 'lease_until')
    redis.call('HINCRBY', t[3], 'f:' .. st, -1)
    redis.call('HINCRBY', t[3], 'f:withdrawn', 1)
  end
end
for _, t in ipairs(w.task_del or {}) do
  local st = redis.call('HGET', t[1], 'state')
  if st and st ~= 'sent' and st ~= 'skipped' then
    redis.call('ZREM', t[2] .. st, t[4])
    redis.call('DEL', t[1])
    redis.call('HINCRBY', t[3], 'f:' .. st, -1)
  end
end

for _, a in ipairs(w.acks or {}) do
  if #a > 1 then redis.call('XACK', a[1], w.group, unpack(a, 2)) end
end
return {'ok', made}
