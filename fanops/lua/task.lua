-- task v4: one operator action on a follow-up task, atomically.
-- KEYS[1] the room's task hash, KEYS[2] room hash, KEYS[3] sent log (zset viewer -> shop clock),
-- KEYS[4] (age_out only) the held claims (keys.made_held); ARGV[13] the entry's marker
-- "@<wall ms made>", ARGV[14] "held" if the entry is one of KEYS[4]'s
-- ARGV[1] action (claim|sent|skip|release|expire|age_out), ARGV[2] operator, ARGV[3] now (wall ms),
-- ARGV[4] lease ms (age_out: followup_expire_hours in ms), ARGV[5] queue key prefix, ARGV[6] task member,
-- ARGV[7] reason, ARGV[8] shop clock,
-- ARGV[9] the viewer (the task's field in KEYS[1] unless ARGV[12]), ARGV[10] channel and ARGV[11]
-- message id (sent), ARGV[12] the task's field in KEYS[1] if not the viewer (kinds other than
-- lingered: keys.kind_tasks, "<occasion>:<viewer>"; KEYS[2] is then the kind's counters)
-- The task is a msgpack array (fanops.state.TaskRec): [1] state, [22] holder, [23] lease_until,
-- [24] claimed_at, [25] updated_at, [26] sent_by, [27] sent_at, [28] sent_clock, [29] skipped_by,
-- [30] skip_reason, [31] skipped_at, [32] channel, [33] message_id.
-- Returns {"ok", state} or {"err", code, state, holder}.
local action, op, now, viewer = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[9]
local fld = (ARGV[12] and ARGV[12] ~= '') and ARGV[12] or viewer
local function unhold()  -- a held entry that is done with leaves the held claims (if still this one)
  if ARGV[14] == 'held' and redis.call('HGET', KEYS[4], ARGV[6]) == ARGV[13] then
    redis.call('HDEL', KEYS[4], ARGV[6])
  end
end
local b = redis.call('HGET', KEYS[1], fld)
if not b then
  if action == 'age_out' then unhold() end
  return {'err', 'not_found', '', ''}
end
local t = cmsgpack.unpack(b)
local stored, holder, lease = t[1], t[22], tonumber(t[23]) or 0
local state = stored
local expired = state == 'claimed' and lease < now
if expired then state = 'pending'; holder = '' end

local function move(to)
  if stored ~= to then
    local prio = redis.call('ZSCORE', ARGV[5] .. stored, ARGV[6]) or 0
    redis.call('ZREM', ARGV[5] .. stored, ARGV[6])
    redis.call('ZADD', ARGV[5] .. to, prio, ARGV[6])
    redis.call('HINCRBY', KEYS[2], 'f:' .. stored, -1)
    redis.call('HINCRBY', KEYS[2], 'f:' .. to, 1)
  end
  t[1] = to
  t[25] = now
end
-- fields left out at their default (TaskRec omits trailing defaults) are filled back in, so that
-- the array has no holes (cmsgpack would pack a table with holes as a map)
local DEFAULTS = {[22] = '', [23] = 0, [24] = 0, [25] = 0, [26] = '', [27] = 0, [28] = 0, [29] = '', [30] = '',
                  [31] = 0, [32] = '', [33] = ''}
local function save()
  for i = 22, 33 do
    if t[i] == nil then t[i] = DEFAULTS[i] end
  end
  redis.call('HSET', KEYS[1], fld, cmsgpack.pack(t))
end

if action == 'expire' then
  if expired then
    move('pending')
    t[22] = ''; t[23] = 0
    save()
    return {'ok', 'pending'}
  end
  return {'ok', stored}
end
if action == 'age_out' then
  -- a task still pending (a lapsed claim is pending) that long after it was made expires; a claim
  -- still held joins the held claims, looked at again next pass
  local made = string.match(ARGV[13], '^@(%d+)')
  if tonumber(made) > now - tonumber(ARGV[4]) then return {'ok', 'young'} end
  if state == 'claimed' then
    if ARGV[14] ~= 'held' then redis.call('HSET', KEYS[4], ARGV[6], ARGV[13]) end
    return {'ok', 'claimed'}
  end
  unhold()
  if state ~= 'pending' then return {'ok', 'settled'} end
  move('expired')
  t[22] = ''; t[23] = 0
  save()
  return {'ok', 'expired'}
end
if state ~= 'pending' and state ~= 'claimed' then
  return {'err', 'state', state, t[22] or ''}
end
if state == 'claimed' and holder ~= op then
  return {'err', 'claimed', state, holder or ''}
end
if action == 'claim' then
  move('claimed')
  t[22] = op; t[23] = now + tonumber(ARGV[4]); t[24] = now
  save()
  return {'ok', 'claimed'}
elseif action == 'release' then
  if state ~= 'claimed' then return {'err', 'not_claimed', state, ''} end
  move('pending')
  t[22] = ''; t[23] = 0
  save()
  return {'ok', 'pending'}
elseif action == 'sent' then
  if state ~= 'claimed' then return {'err', 'not_claimed', state, ''} end
  move('sent')
  t[26] = op; t[27] = now; t[28] = tonumber(ARGV[8]); t[23] = 0
  t[32] = ARGV[10] or ''; t[33] = ARGV[11] or ''
  save()
  redis.call('ZADD', KEYS[3], 'GT', tonumber(ARGV[8]), viewer)
  return {'ok', 'sent'}
elseif action == 'skip' then
  move('skipped')
  t[29] = op; t[30] = ARGV[7]; t[31] = now; t[22] = ''; t[23] = 0
  save()
  return {'ok', 'skipped'}
end
return {'err', 'action', state, ''}
