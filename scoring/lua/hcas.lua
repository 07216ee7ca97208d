-- hcas v2: set a hash field only if it still holds what was read (a scorer may have written it since).
-- KEYS[1] the hash; ARGV[1] field, ARGV[2] the value read, ARGV[3] the new value (none: delete the field).
-- Returns 1 if set (or deleted), 0 if the field changed since (left as it is: the caller reads it again later).
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if #ARGV < 3 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  end
  return 1
end
return 0
