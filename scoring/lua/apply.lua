-- apply v7: write one scorer batch's effects atomically, or nothing (v7: converted and withdrawn
-- tasks take card rewrites too).
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
--   pcount presentK, minutesK, field, since   the present zset's members scored since -> a minute's field
--   rpush listK, value, daysK, day   append to a day's list of due viewers (keys.due_far), note the day
--   nested arrays (few a batch), with key names:
--   xadd  {{key, maxlen, f1, v1, ...}}
--   tasks (TK: the room's task hash, V: the viewer, its field there; REC: ARGV index of a packed task;
--     the other follow-up kinds use the same arrays with TK the kind's hash, V "<occasion>:<viewer>"
--     and roomkey the kind's counters: keys.kind_tasks, keys.kind_counts)
--   task_new {{TK, V, queue, roomkey, sentkey, member, viewer, prio, min_sent, state, REC, madekey}}
--     madekey (keys.made): the open tasks' making times for expiry, appended to the list of the
--     minute of Redis's clock after a marker "@<wall ms>" (keys.made_bucket), the ids as
--     "=<id less its viewer>" once and ".<viewer>" a task (a lingered task's room, a kind's occasion)
--   task_move {{TK, V, qprefix, roomkey, member, to, from1, from2, ...}}
--   task_prio  flat, TK (index in k), V, member, prio, SHOWN   SHOWN: ARGV index of [task_at, fields 4..21];
--     task_qp the queues' key prefix (keys.queue(shop, ''))
--   task_del {{TK, V, qprefix, roomkey, member}}   (only a task no operator has sent or skipped, not expired)
--   task_withdraw {{TK, V, qprefix, roomkey, member, consent_ts}}   an open task made before a
--       refusal of DMs is withdrawn (rooms whose records are archived)
--   zremrange {{key, below}}   drop members scored below a value
--   lpop  {{listK, count, daysK, day}}   take the first count items of a day's list (read by the
--       scorer before), and forget the day once its list is empty
--   rules_version   the rules version the batch was scored under (the shop's stats rules_applied)
--   epoch           the shop's archive_epoch as the batch read it (a show archived or opened since: read again)
--   late_check {g, v, g, v, ...} and clock_keys {clockmin, clockmax}: no shop-clock value in [g, v)
--   late_read {{late-window key, lo, hi, member...}}: the index's members scored in (lo, hi], in order
--   sent_check {sent-log key, viewer, mark, ...}: the viewers' sent-log marks as read (-1: none)
-- Returns {"ok"}, {"stale", id} (an entry is no longer ours), {"conflict", key, field}
-- or {"locked", key} (a rebuild is running, or ran since the batch was scored).
local w = cmsgpack.unpack(ARGV[1])

if w.lock and redis.call('EXISTS', w.lock) == 1 then
  return {'locked', w.lock}  -- the shop is being rebuilt under new settings: try again soon
end
if w.rules_version and tonumber(redis.call('HGET', KEYS[1], 'rules_applied') or '0') ~= w.rules_version then
  return {'locked', 'rules_applied'}  -- scored under rules that a rebuild has replaced since: score again
end
if w.epoch and tonumber(redis.call('HGET', KEYS[1], 'archive_epoch') or '0') ~= w.epoch then
  -- a show was archived or opened again since the batch read (an archive beside the scorer, in its
  -- idle look's thread or another process): its reads of that show's data may straddle the change,
  -- and its records would come back into an archived show's removed data. Read again
  return {'conflict', KEYS[1], 'archive_epoch'}
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

-- Many writes go to a few keys (the viewers hash, a room's records): they are grouped by key and
-- sent as one command per key and CHUNK items, in their order (a later write of a field wins),
-- instead of one call a write.
local CHUNK = 256
local function by_key(a, stride, group_of)
  -- the writes of a flat array (their first index) grouped by group_of(i), default their key,
  -- groups in the order first seen
  local order, groups = {}, {}
  for i = 1, #a, stride do
    local gk = group_of and group_of(i) or a[i]
    local g = groups[gk]
    if not g then
      g = {}
      groups[gk] = g
      order[#order + 1] = gk
    end
    g[#g + 1] = i
  end
  return order, groups
end
local function multi(cmd, head, items, each)
  -- cmd head... [each(item)...] in chunks of CHUNK items
  for s = 1, #items, CHUNK do
    local args = {unpack(head)}
    for x = s, math.min(#items, s + CHUNK - 1) do each(args, items[x]) end
    redis.call(cmd, unpack(args))
  end
end

local cas = w.cas or {}
local cas_keys, cas_groups = by_key(cas, 4)
for _, k in ipairs(cas_keys) do
  local idx = cas_groups[k]
  for s = 1, #idx, CHUNK do
    local e = math.min(#idx, s + CHUNK - 1)
    local fields = {}
    for x = s, e do fields[#fields + 1] = cas[idx[x] + 1] end
    local cur = redis.call('HMGET', K[k], unpack(fields))
    for x = s, e do
      local i = idx[x]
      local old = cas[i + 2] and ARGV[cas[i + 2]]
      if cur[x - s + 1] ~= old then
        return {'conflict', K[k], cas[i + 1]}
      end
    end
  end
end

local moved = reads_moved(w, CHUNK)  -- apply_reads.lua
if moved then return moved end

for _, k in ipairs(cas_keys) do
  multi('HSET', {K[k]}, cas_groups[k], function(args, i)
    args[#args + 1] = cas[i + 1]
    args[#args + 1] = ARGV[cas[i + 3]]
  end)
end
local a = w.hset or {}
local hset_keys, hset_groups = by_key(a, 3)
for _, k in ipairs(hset_keys) do
  multi('HSET', {K[k]}, hset_groups[k], function(args, i)
    local v = a[i + 2]
    if type(v) == 'number' then v = ARGV[v] end
    args[#args + 1] = a[i + 1]
    args[#args + 1] = v
  end)
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
-- by key and flag (GT / LT / none), in a fixed order: the first write of each group leads it.
-- A batch writes each zset with one flag kind only (scoring.writeset's rule: rooms and clockmax GT,
-- roomfirst and clockmin LT, every other zset none); a member written with two kinds in one batch
-- would end as its group order says, not as the write order
local zorder, zflags = {}, {}  -- the groups in the order first seen; flag -> key index -> group
for i = 1, #a, 4 do
  local f = a[i + 3]
  local by_index = zflags[f]
  if not by_index then
    by_index = {}
    zflags[f] = by_index
  end
  local g = by_index[a[i]]
  if not g then
    g = {}
    by_index[a[i]] = g
    zorder[#zorder + 1] = g
  end
  g[#g + 1] = i
end
for _, idx in ipairs(zorder) do
  local i0 = idx[1]
  multi('ZADD', a[i0 + 3] and {K[a[i0]], a[i0 + 3]} or {K[a[i0]]}, idx, function(args, i)
    args[#args + 1] = a[i + 2]
    args[#args + 1] = a[i + 1]
  end)
end
a = w.zrem or {}
local zrem_keys, zrem_groups = by_key(a, 2)
for _, k in ipairs(zrem_keys) do
  multi('ZREM', {K[k]}, zrem_groups[k], function(args, i) args[#args + 1] = a[i + 1] end)
end
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
-- lpush: LPUSH then LTRIM to keep, item after item. A list whose items all keep the same number
-- (>= 1) takes its last `keep` values in one LPUSH (per CHUNK, in order) and one LTRIM: a trim drops
-- only the tail, which a later push never reaches again, so the list ends the same; a list with
-- two keeps in the batch is written item after item
a = w.lpush or {}
local lp_keys, lp_groups = by_key(a, 3, function(i) return K[a[i]] end)
for _, k in ipairs(lp_keys) do
  local idx = lp_groups[k]
  local keep = a[idx[1] + 2]
  local same = keep >= 1
  for x = 2, #idx do same = same and a[idx[x] + 2] == keep end
  if same then
    local last = {}  -- the values a trim would keep of the batch's
    for x = math.max(1, #idx - keep + 1), #idx do last[#last + 1] = idx[x] end
    multi('LPUSH', {k}, last, function(args, i) args[#args + 1] = a[i + 1] end)
    redis.call('LTRIM', k, 0, keep - 1)
  else
    for _, i in ipairs(idx) do
      redis.call('LPUSH', k, a[i + 1])
      redis.call('LTRIM', k, 0, a[i + 2] - 1)
    end
  end
end
for _, c in ipairs(w.lpop or {}) do
  if c[2] > 0 then redis.call('LPOP', c[1], c[2]) end
  if redis.call('LLEN', c[1]) == 0 then redis.call('ZREM', c[3], c[4]) end
end
-- rpush: RPUSH listK value and ZADD daysK day day, item after item; sent as one RPUSH a list (per
-- CHUNK, in order) and one ZADD a days key (each day once: the same score and member again is no change)
a = w.rpush or {}
local rp_keys, rp_groups = by_key(a, 4, function(i) return K[a[i]] end)
for _, k in ipairs(rp_keys) do
  multi('RPUSH', {k}, rp_groups[k], function(args, i) args[#args + 1] = a[i + 1] end)
end
local dk_keys, dk_groups = by_key(a, 4, function(i) return K[a[i + 2]] end)
for _, k in ipairs(dk_keys) do
  local seen, days = {}, {}
  for _, i in ipairs(dk_groups[k]) do
    if not seen[a[i + 3]] then
      seen[a[i + 3]] = true
      days[#days + 1] = i
    end
  end
  multi('ZADD', {k}, days, function(args, i)
    args[#args + 1] = a[i + 3]
    args[#args + 1] = a[i + 3]
  end)
end
a = w.pcount or {}  -- after every write of the batch: the count includes it
for i = 1, #a, 4 do
  redis.call('HSET', K[a[i + 1]], a[i + 2], redis.call('ZCOUNT', K[a[i]], a[i + 3], '+inf'))
end

-- the writes of many tasks, gathered by key and sent as one command a key (per CHUNK pairs), in the
-- order the keys were first met
local function gather()
  local order, groups = {}, {}
  local g = {}
  function g.add(k, x, y)
    local a = groups[k]
    if not a then
      a = {}
      groups[k] = a
      order[#order + 1] = k
    end
    a[#a + 1] = x
    a[#a + 1] = y
  end
  function g.send(cmd, flag)
    for _, k in ipairs(order) do
      local a = groups[k]
      for s = 1, #a, 2 * CHUNK do
        if flag then
          redis.call(cmd, k, flag, unpack(a, s, math.min(#a, s + 2 * CHUNK - 1)))
        else
          redis.call(cmd, k, unpack(a, s, math.min(#a, s + 2 * CHUNK - 1)))
        end
      end
    end
  end
  return g
end
local function lookup(cmd, items, key_of, field_of)
  -- cmd (HMGET, ZMSCORE) of each item's field in its key, by key: the replies by item index
  local order, groups = by_key(items, 1, function(i) return key_of(items[i]) end)
  local out = {}
  for _, k in ipairs(order) do
    local idx = groups[k]
    for s = 1, #idx, CHUNK do
      local e = math.min(#idx, s + CHUNK - 1)
      local f = {}
      for x = s, e do f[#f + 1] = field_of(items[idx[x]]) end
      local got = redis.call(cmd, k, unpack(f))
      for x = s, e do out[idx[x]] = got[x - s + 1] end
    end
  end
  return out
end

-- a task is a msgpack array in a field of the room's task hash (fanops.state.TaskRec):
-- [1] state, [3] task_at, [4..21] what the operator sees, [22] holder, [23] lease_until
-- new tasks: a task is made if its field is free and its viewer was not sent a follow-up since
-- min_sent; read for all at once (HMGET, ZMSCORE), written by key
local made = 0
local tn = w.task_new or {}
if #tn > 0 then
  local taken = lookup('HMGET', tn, function(t) return t[1] end, function(t) return t[2] end)
  local sent = lookup('ZMSCORE', tn, function(t) return t[5] end, function(t) return t[7] end)
  local recs, queues = gather(), gather()
  local made_by, made_order = {}, {}
  local function made_add(base, member, viewer)
    -- a task id is a prefix and its viewer: "=<prefix>" once, then ".<viewer>" a task of it
    local m = made_by[base]
    if not m then
      m = {order = {}, by = {}, whole = {}}
      made_by[base] = m
      made_order[#made_order + 1] = base
    end
    local n = #member - #viewer
    if n > 0 and string.sub(member, n + 1) == viewer then
      local pre = string.sub(member, 1, n)
      local g = m.by[pre]
      if not g then
        g = {'=' .. pre}
        m.by[pre] = g
        m.order[#m.order + 1] = pre
      end
      g[#g + 1] = '.' .. viewer
    else
      m.whole[#m.whole + 1] = member
    end
  end
  local counts, count_order, seen = {}, {}, {}
  local wall = nil
  for i, t in ipairs(tn) do
    local seen_k = seen[t[1]] or {}
    seen[t[1]] = seen_k
    if not taken[i] and not seen_k[t[2]] and tonumber(sent[i] or '-1e300') < t[9] then
      seen_k[t[2]] = true  -- a field twice in the batch: made once, as if written in turn
      recs.add(t[1], t[2], ARGV[t[11]])
      queues.add(t[3], t[8], t[6])
      local c = counts[t[4]]
      if not c then
        c = {}
        counts[t[4]] = c
      end
      if not c[t[10]] then
        c[t[10]] = 0
        count_order[#count_order + 1] = {t[4], t[10]}
      end
      c[t[10]] = c[t[10]] + 1
      if t[12] and (t[10] == 'pending' or t[10] == 'claimed') then
        if not wall then
          local tm = redis.call('TIME')
          wall = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
        end
        made_add(t[12], t[6], t[7])
      end
      made = made + 1
    end
  end
  recs.send('HSET')
  queues.send('ZADD')
  for _, c in ipairs(count_order) do redis.call('HINCRBY', c[1], 'f:' .. c[2], counts[c[1]][c[2]]) end
  for _, base in ipairs(made_order) do
    local m, minute = made_by[base], wall - wall % 60000
    local bucket = base .. ':' .. string.format('%d', minute)
    local a = {'@' .. string.format('%d', wall)}
    for _, x in ipairs(m.whole) do a[#a + 1] = x end
    for _, pre in ipairs(m.order) do
      for _, x in ipairs(m.by[pre]) do a[#a + 1] = x end
    end
    for s = 1, #a, CHUNK do redis.call('RPUSH', bucket, unpack(a, s, math.min(#a, s + CHUNK - 1))) end
    redis.call('ZADD', base, 'NX', minute, string.format('%d', minute))
  end
end
local function settle(t, rec, from, to, qprefix, member, roomkey)
  local prio = redis.call('ZSCORE', qprefix .. from, member)
  redis.call('ZREM', qprefix .. from, member)
  redis.call('ZADD', qprefix .. to, prio or 0, member)
  rec[1] = to
  rec[22] = ''
  rec[23] = 0
  redis.call('HSET', t[1], t[2], cmsgpack.pack(rec))
  redis.call('HINCRBY', roomkey, 'f:' .. from, -1)
  redis.call('HINCRBY', roomkey, 'f:' .. to, 1)
end
for _, t in ipairs(w.task_move or {}) do
  local b = redis.call('HGET', t[1], t[2])
  if b then
    local rec = cmsgpack.unpack(b)
    for i = 7, #t do
      if rec[1] == t[i] then
        settle(t, rec, rec[1], t[6], t[3], t[5], t[4])
        break
      end
    end
  end
end
-- a task's new priority and shown fields (pending or claimed, or closed by the data: converted,
-- withdrawn): read by key (HMGET), written by key (HSET) and by queue (ZADD XX). A record as the
-- scorer packs it (21 items: no operator field yet) is spliced: its header, [1] state and [2]
-- made_at kept as they are, the rest the shown fields' items as packed by the scorer; any other
-- record (an operator's fields in it) is unpacked, changed and packed again
local INT_BYTES = {[0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8, [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8}
local function skip_head(b, p)
  -- the offset after the msgpack integer at p (nil if it is not one)
  local c = string.byte(b, p)
  if not c then return nil end
  if c < 0x80 or c >= 0xe0 then return p + 1 end
  local n = INT_BYTES[c]
  return n and p + 1 + n or nil
end
local function array_body(b)
  -- a msgpack array's item count and the offset of its first item
  local c = string.byte(b, 1)
  if c >= 0x90 and c <= 0x9f then return c - 0x90, 2 end
  if c == 0xdc then return string.byte(b, 2) * 256 + string.byte(b, 3), 4 end
  return nil, nil
end
local function spliced(b, shown)
  -- the record b, packed as the scorer packs it, with the shown fields of the packed array shown,
  -- and its state; nil if b is packed otherwise (then it is unpacked and packed again)
  local n, p = array_body(b)
  if n ~= 21 then return nil, nil end
  local c = string.byte(b, p)
  if c < 0xa0 or c > 0xbf then return nil, nil end
  local st = string.sub(b, p + 1, p + c - 0xa0)
  local e = skip_head(b, p + 1 + c - 0xa0)
  local sn, sp = array_body(shown)
  if not e or sn ~= 19 then return nil, nil end
  return string.sub(b, 1, e - 1) .. string.sub(shown, sp), st
end
local function repacked(tk, v, shown)
  local b = redis.call('HGET', tk, v)
  local rec = cmsgpack.unpack(b)
  local d = cmsgpack.unpack(shown)
  for i = 1, #d do rec[2 + i] = d[i] end
  return cmsgpack.pack(rec), rec[1]
end
a = w.task_prio or {}
local prio_keys, prio_groups = by_key(a, 5)
local requeue = {pending = {}, claimed = {}, converted = {}, withdrawn = {}}  -- score, member, ... by state
for _, k in ipairs(prio_keys) do
  local idx = prio_groups[k]
  for s = 1, #idx, CHUNK do
    local e = math.min(#idx, s + CHUNK - 1)
    local fields = {}
    for x = s, e do fields[#fields + 1] = a[idx[x] + 1] end
    local cur = redis.call('HMGET', K[k], unpack(fields))
    local args = {K[k]}
    for x = s, e do
      local i = idx[x]
      if cur[x - s + 1] then
        local b, st = spliced(cur[x - s + 1], ARGV[a[i + 4]])
        if not b then b, st = repacked(K[k], a[i + 1], ARGV[a[i + 4]]) end
        if requeue[st] then  -- not an operator's sent or skipped, nor an expired one
          args[#args + 1] = a[i + 1]
          args[#args + 1] = b
          local q = requeue[st]
          q[#q + 1] = a[i + 3]
          q[#q + 1] = a[i + 2]
        end
      end
    end
    if #args > 1 then redis.call('HSET', unpack(args)) end
  end
end
for _, st in ipairs({'pending', 'claimed', 'converted', 'withdrawn'}) do
  local q = requeue[st]
  for s = 1, #q, 2 * CHUNK do
    redis.call('ZADD', w.task_qp .. st, 'XX', unpack(q, s, math.min(#q, s + 2 * CHUNK - 1)))
  end
end

for _, t in ipairs(w.task_withdraw or {}) do
  local b = redis.call('HGET', t[1], t[2])
  if b then
    local rec = cmsgpack.unpack(b)
    if (rec[1] == 'pending' or rec[1] == 'claimed') and rec[3] < t[6] then
      settle(t, rec, rec[1], 'withdrawn', t[3], t[5], t[4])
    end
  end
end
for _, t in ipairs(w.task_del or {}) do
  local b = redis.call('HGET', t[1], t[2])
  if b then
    local st = cmsgpack.unpack(b)[1]
    if st ~= 'sent' and st ~= 'skipped' and st ~= 'expired' then
      redis.call('ZREM', t[3] .. st, t[5])
      redis.call('HDEL', t[1], t[2])
      redis.call('HINCRBY', t[4], 'f:' .. st, -1)
    end
  end
end

for _, a in ipairs(w.acks or {}) do
  if #a > 1 then redis.call('XACK', a[1], w.group, unpack(a, 2)) end
end
return {'ok', made}
