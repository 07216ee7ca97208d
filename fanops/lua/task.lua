-- task v1: one operator action on a follow-up task, atomically.
-- KEYS[1] task hash, KEYS[2] room hash, KEYS[3] sent log (zset viewer -> shop clock)
-- ARGV[1] action (claim|sent|skip|release|expire), ARGV[2] operator, ARGV[3] now (wall ms),
-- ARGV[4] lease ms, ARGV[5] queue key prefix, ARGV[6] task member, ARGV[7] reason, ARGV[8] shop clock
-- Returns {"ok", state} or {"err", code, state, holder}.
local action, op, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('HMGET', KEYS[1], 'state', 'holder', 'lease_until', 'viewer')
local state, holder, lease, viewer = t[1], t[2], tonumber(t[3] or '0'), t[4]
if not state then return {'err', 'not_found', '', ''} end
local expired = state == 'claimed' and lease < now
if expired then state = 'pending'; holder = false end

local function move(to)
  local from = t[1]
  if from ~= to then
    local prio = redis.call('ZSCORE', ARGV[5] .. from, ARGV[6]) or 0
    redis.call('ZREM', ARGV[5] .. from, ARGV[6])
    redis.call('ZADD', ARGV[5] .. to, prio, ARGV[6])
    redis.call('HINCRBY', KEYS[2], 'f:' .. from, -1)
    redis.call('HINCRBY', KEYS[2], 'f:' .. to, 1)
  end
  redis.call('HSET', KEYS[1], 'state', to, 'updated_at', now)
end

if action == 'expire' then
  if expired then
    move('pending')
    redis.call('HDEL', KEYS[1], 'holder', 'lease_until')
    return {'ok', 'pending'}
  end
  return {'ok', t[1]}
end
if state ~= 'pending' and state ~= 'claimed' then
  return {'err', 'state', state, t[2] or ''}
end
if state == 'claimed' and holder ~= op then
  return {'err', 'claimed', state, holder or ''}
end
if action == 'claim' then
  move('claimed')
  redis.call('HSET', KEYS[1], 'holder', op, 'lease_until', now + tonumber(ARGV[4]), 'claimed_at', now)
  return {'ok', 'claimed'}
elseif action == 'release' then
  if state ~= 'claimed' then return {'err', 'not_claimed', state, ''} end
  move('pending')
  redis.call('HDEL', KEYS[1], 'holder', 'lease_until')
  return {'ok', 'pending'}
elseif action == 'sent' then
  if state ~= 'claimed' then return {'err', 'not_claimed', state, ''} end
  move('sent')
  redis.call('HSET', KEYS[1], 'sent_by', op, 'sent_at', now, 'sent_clock', ARGV[8])
  redis.call('HDEL', KEYS[1], 'lease_until')
  redis.call('ZADD', KEYS[3], 'GT', tonumber(ARGV[8]), viewer)
  return {'ok', 'sent'}
elseif action == 'skip' then
  move('skipped')
  redis.call('HSET', KEYS[1], 'skipped_by', op, 'skip_reason', ARGV[7], 'skipped_at', now)
  redis.call('HDEL', KEYS[1], 'lease_until', 'holder')
  return {'ok', 'skipped'}
end
return {'err', 'action', state, ''}
