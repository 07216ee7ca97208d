-- task_prio v1: give an open task a new priority, if the task still holds what was read (an operator
-- or a scorer may have moved it since).
-- KEYS[1] the task hash, KEYS[2] the queue of the state read; ARGV[1] field, ARGV[2] the record read,
-- ARGV[3] the new record, ARGV[4] its queue score, ARGV[5] its queue member.
-- Returns 1 if rewritten, 0 if the task changed since (left as it is).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], 'XX', ARGV[4], ARGV[5])
return 1
