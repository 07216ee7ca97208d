-- reopen v3: an archived room opened again by a late event (scoring/reopen.py), in one step.
-- KEYS[1] the room's hash, KEYS[2] the shop's viewers hash, KEYS[3] the shop's stats hash,
-- KEYS[4] keys.room_nos, KEYS[5] keys.reopened,
-- KEYS[6 .. 5+S] the shop's partition streams, KEYS[6+S ..] the keys the wire's restores and
-- sorted-set entries name (by index into KEYS).
-- ARGV[1] msgpack map: gen (the room's archive_generation as read), room, no, now (wall ms),
--   viewers: {{vid, old blob, new blob}, ...}  (compare-and-set: old must still be there),
--   restore: {{key index, DUMP payload}, ...}, zadd: {{key index, score, member}, ...},
--   streams: S, where vid, the blobs, the payloads and the members are indexes into
--   ARGV (binary values).
-- The archive's ids are back in the room's dedupe table already (scoring/reopen.py fill_dedupe:
-- the consumer knows them again), and the room hash's reopen_marks keeps each stream's last entry
-- id: entries up to it may have been accepted without them, and their events of the room are
-- still checked against the archive (scoring/late.py).
-- Replies {'ok'}, {'open'} (the room is not archived: another scorer opened it), {'moved'}
-- (archived again since, under another generation) or {'conflict', vid} (read again).
local w = cmsgpack.unpack(ARGV[1])
local room, viewers, stats = KEYS[1], KEYS[2], KEYS[3]
if not redis.call('HGET', room, 'archived') then return {'open'} end
if tostring(redis.call('HGET', room, 'archive_generation')) ~= tostring(w.gen) then return {'moved'} end
for _, v in ipairs(w.viewers) do
  if redis.call('HGET', viewers, ARGV[v[1]]) ~= ARGV[v[2]] then return {'conflict', ARGV[v[1]]} end
end
for _, x in ipairs(w.restore) do
  local key = KEYS[x[1]]
  redis.call('DEL', key)
  redis.call('RESTORE', key, 0, ARGV[x[2]])
end
for _, x in ipairs(w.zadd) do
  redis.call('ZADD', KEYS[x[1]], x[2], ARGV[x[3]])
end
for _, v in ipairs(w.viewers) do
  redis.call('HSET', viewers, ARGV[v[1]], ARGV[v[3]])
end
local marks = {}
for k = 6, 5 + w.streams do
  local last = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)
  marks[#marks + 1] = last[1] and last[1][1] or '0-0'
end
redis.call('HDEL', room, 'archived', 'archived_at')
redis.call('HSET', room, 'reopened_at', w.now, 'reopen_marks', table.concat(marks, ' '))
redis.call('HDEL', KEYS[4], tostring(w.no))
redis.call('HSET', KEYS[5], w.room, w.no)
redis.call('HINCRBY', stats, 'archive_epoch', 1)
return {'ok'}
