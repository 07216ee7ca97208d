-- apply_reads v1 (a library: prepended to apply.lua by scoring/worker.py): whether what a batch read
-- of the time indexes and the sent log still holds when it is written; a reply {'conflict', key,
-- field} (the scorer reads again) if not, else nil.
local function reads_moved(w, CHUNK)
  -- the late-window index (keys.late_window) against the shop-clock index, both ways: a batch that
  -- added a pair to the index checks that no clock value came in [g, v) since it read (v: the first
  -- value at or after g it knew), and a batch with clock values new to it checks that the index
  -- still holds, in the ranges they open, just the pairs it read and rescored
  local late = w.late_check or {}
  if #late > 0 then
    local ck = w.clock_keys
    for i = 1, #late, 2 do
      local lo, hi = late[i], '(' .. late[i + 1]
      for j = 1, 2 do
        if #redis.call('ZRANGEBYSCORE', ck[j], lo, hi, 'LIMIT', 0, 1) > 0 then
          return {'conflict', ck[j], tostring(lo)}
        end
      end
    end
  end
  for _, g in ipairs(w.late_read or {}) do
    local got = redis.call('ZRANGEBYSCORE', g[1], '(' .. g[2], g[3])
    local same = #got == #g - 3
    for j = 1, #got do
      if not same then break end
      same = got[j] == g[j + 3]
    end
    if not same then return {'conflict', g[1], tostring(g[2])} end
  end
  -- the sent-log marks of the viewers of new lingered tasks, as the batch read them (-1: none): a
  -- follow-up sent to one since holds the task back (the scorer reads again), where the task_new's
  -- min_sent check would drop it for good
  local sc = w.sent_check
  if sc then
    for s = 2, #sc, 2 * CHUNK do
      local vids = {}
      for i = s, math.min(#sc, s + 2 * CHUNK - 1), 2 do vids[#vids + 1] = sc[i] end
      local cur = redis.call('ZMSCORE', sc[1], unpack(vids))
      for j = 1, #vids do
        if (cur[j] and tonumber(cur[j]) or -1) ~= sc[s + 2 * j - 1] then return {'conflict', sc[1], vids[j]} end
      end
    end
  end
  return nil
end
