-- kind_prune v2: settled tasks of one follow-up kind leave Redis, each only if it still holds what
-- the ledger was given (scoring.kind_prune: an operator or a scorer may have changed it since it
-- was read).  KEYS[1] the kind's task hash (keys.kind_tasks), KEYS[2] the settled-since index
-- (keys.kind_settled).  (A pruned task's expiry entry, if any is left, finds it gone and leaves:
-- fanops.expiry; the scorer never makes a pruned kind task again, see scoring.kind_prune.)
-- ARGV[1] the queue key prefix (keys.queue(shop, "")); then per task: its field in KEYS[1], the
-- packed task as read, its id (the queues' member).
-- Returns one 1 (removed) or 0 (changed or gone since it was read: left as it is) per task.
local out = {}
for i = 2, #ARGV, 3 do
  local b = redis.call('HGET', KEYS[1], ARGV[i])
  if b and b == ARGV[i + 1] then
    local st = cmsgpack.unpack(b)[1]
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', ARGV[1] .. st, ARGV[i + 2])
    redis.call('ZREM', KEYS[2], ARGV[i + 2])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
