-- restream v1: rebuild a stream that no consumer group reads from its own entries, under the same
-- ids and last id.  XDEL and XTRIM only mark an entry deleted inside its node while other entries
-- share the node: the entry's bytes stay in memory, in DUMP and in the server's files.  Used by
-- scoring.forget after it deleted entries naming a viewer (the transitions, the dead letters).
-- KEYS[1] the stream.  Returns the entries kept, or -1 if a consumer group reads it (left as is).
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local info = redis.call('XINFO', 'STREAM', key)
local last, groups
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
  if info[i] == 'groups' then groups = info[i + 1] end
end
if groups and groups > 0 then return -1 end
local entries = redis.call('XRANGE', key, '-', '+')
redis.call('DEL', key)
for _, e in ipairs(entries) do
  redis.call('XADD', key, e[1], unpack(e[2]))
end
if #entries > 0 then redis.call('XSETID', key, last) end
return #entries
