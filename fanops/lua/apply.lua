-- apply v3: write one scorer batch's effects atomically, or nothing.
-- KEYS[1] the shop's stats key (routes the call to the shop's slot; every key
-- below carries the same {shop} hash tag).  ARGV[1] a msgpack map, the write set;
-- ARGV[2..] the packed states it names by index (cmsgpack has no binary type):
--   group, consumer, acks {{stream, id, id, ...}, ...}   the entries this batch covers, by stream
--   k     the keys the flat arrays below name by index (K = k[i])
--   flat arrays, a write every `stride` items:
--   cas   K, field, old index|false, new index   each viewer read, unchanged since, or abort
--   hset  K, field, value or index   hincr K, field, int   hfloat K, field, float
--   hmax  K, field, value   zadd K, member, score, flag|false   zrem K, member
--   lpush K, value, keep    scount setK, member, hashK, field   count a member once: +1 if new to the set
--   nested arrays (few a batch), with key names:
--   xadd  {{key, maxlen, f1, v1, ...}}
--   task_new {{taskkey, queue, roomkey, sentkey, member, viewer, prio, min_sent, state, f1, v1, ...}}
--   task_move {{taskkey, qprefix, roomkey, member, to, from1, from2, ...}}
--   task_prio {{taskkey, qprefix, member, prio, f1, v1, ...}}
--   task_del {{taskkey, qprefix, roomkey, member}}   (only a task no operator has sent or skipped)
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
local K = w.k or {}
local cas = w.cas or {}
for i = 1, #cas, 4 do
  local cur = redis.call('HGET', K[cas[i]], cas[i + 1])
  local old = cas[i + 2] and ARGV[cas[i + 2]]
  if cur ~= old then
    return {'conflict', K[cas[i]], cas[i + 1]}
  end
end

for i = 1, #cas, 4 do redis.call('HSET', K[cas[i]], cas[i + 1], ARGV[cas[i + 3]]) end
local a = w.hset or {}
for i = 1, #a, 3 do
  local v = a[i + 2]
  if type(v) == 'number' then v = ARGV[v] end
  redis.call('HSET', K[a[i]], a[i + 1], v)
end
a = w.hincr or {}
for i = 1, #a, 3 do redis.call('HINCRBY', K[a[i]], a[i + 1], a[i + 2]) end
a = w.hfloat or {}
for i = 1, #a, 3 do redis.call('HINCRBYFLOAT', K[a[i]], a[i + 1], tostring(a[i + 2])) end
a = w.hmax or {}
for i = 1, #a, 3 do
  local cur = tonumber(redis.call('HGET', K[a[i]], a[i + 1]) or '-1')
  if tonumber(a[i + 2]) > cur then redis.call('HSET', K[a[i]], a[i + 1], a[i + 2]) end
end
a = w.zadd or {}
for i = 1, #a, 4 do
  if a[i + 3] then redis.call('ZADD', K[a[i]], a[i + 3], a[i + 2], a[i + 1])
  else redis.call('ZADD', K[a[i]], a[i + 2], a[i + 1]) end
end
a = w.zrem or {}
for i = 1, #a, 2 do redis.call('ZREM', K[a[i]], a[i + 1]) end
for _, c in ipairs(w.xadd or {}) do
  local args = {c[1], 'MAXLEN', '~', c[2], '*'}
  for i = 3, #c do args[#args + 1] = c[i] end
  redis.call('XADD', unpack(args))
end
for _, c in ipairs(w.zremrange or {}) do redis.call('ZREMRANGEBYSCORE', c[1], '-inf', '(' .. c[2]) end
a = w.scount or {}
for i = 1, #a, 4 do
  if redis.call('SADD', K[a[i]], a[i + 1]) == 1 then redis.call('HINCRBY', K[a[i + 2]], a[i + 3], 1) end
end
a = w.lpush or {}
for i = 1, #a, 3 do
  redis.call('LPUSH', K[a[i]], a[i + 1])
  redis.call('LTRIM', K[a[i]], 0, a[i + 2] - 1)
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
