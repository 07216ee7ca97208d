-- hcas v1: set a hash field only if it still holds what was read (a scorer may have written it since).
-- KEYS[1] the hash; ARGV[1] field, ARGV[2] the value read, ARGV[3] the new value.
-- Returns 1 if set, 0 if the field changed since (left as it is: the caller reads it again later).
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
