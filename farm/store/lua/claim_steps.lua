-- A worker takes its nodes' steps of one action that are due within `lead`
-- seconds, and gets for each the moment to send it (Redis's clock). The
-- moments are spaced fleet-wide: no window of the action's interval plus
-- `guard` seconds holds more than `batch` of them, so a wave that ran late
-- pushes the next one back instead of stacking onto it. Every worker sends
-- at the moment given, not when its claim returned: the claims' own jitter
-- never reaches the BMCs. A step is taken only while the assignment still
-- gives the worker its node and the action still runs. A step left running
-- past its hold (its worker died) is taken again, by another worker, for on
-- and off, which are safe to repeat, and failed for cycle and reset, which
-- are not.
-- KEYS[1] assignment, KEYS[2] step-of, KEYS[3] steps zset, KEYS[4] running
-- zset, KEYS[5] action hash, KEYS[6] its nodes hash, KEYS[7] its send times,
-- KEYS[8] the event stream, KEYS[9] the inventory (each node's site).
-- ARGV: worker, partitions, hold (seconds past its send time a step may run
-- before another worker may take it), action id, ttl of a finished action,
-- lead, guard, events maxlen, then name, partition pairs, earliest due first
-- (the caller sends a page of them: the script's time is O(names log n)). Returns
-- {retry or '', name, attempt, send_at, ...}: retry is the earliest send
-- time for the steps not taken (the spacing is full, or not yet due).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local a = redis.call('HMGET', KEYS[5], 'state', 'batch', 'action', 'interval', 'by')
local function finish_if_last()
  local left = tonumber(redis.call('HGET', KEYS[5], 'pending')) +
               tonumber(redis.call('HGET', KEYS[5], 'running'))
  if left == 0 then  -- its last steps failed here (left running by a dead worker)
    if a[1] == 'running' then redis.call('HSET', KEYS[5], 'state', 'done') end
    redis.call('HSET', KEYS[5], 'finished_at', now)
    redis.call('EXPIRE', KEYS[5], ARGV[5])
    redis.call('EXPIRE', KEYS[6], ARGV[5])
    redis.call('DEL', KEYS[7])
  end
end
local function fail_left_running(name, step, why)
  step.state, step.ended_at = 'failed', now
  step.error = 'worker ' .. (step.worker or '?') .. ' stopped while running it; ' .. why
  redis.call('HSET', KEYS[6], name, cjson.encode(step))
  redis.call('ZREM', KEYS[4], name)
  redis.call('HDEL', KEYS[2], name)
  redis.call('HINCRBY', KEYS[5], 'running', -1)
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[8], '*', 'node', name, 'type', 'action',
             'action', a[3], 'by', a[5], 'outcome', 'failed', 'worker', step.worker or '',
             'error', step.error, 'latency', '0', 'action_id', ARGV[4])
end
if a[1] == 'cancelled' then
  -- Nothing is taken from a cancelled action; but a step its dead worker
  -- left running would hold its node for good: past its hold it ends here,
  -- failed (the BMC may have acted), and the action with its last step.
  for i = 9, #ARGV, 2 do
    local raw = redis.call('HGET', KEYS[6], ARGV[i])
    local step = raw and cjson.decode(raw)
    if step and step.state == 'running' and redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[4]
        and tonumber(redis.call('ZSCORE', KEYS[4], ARGV[i]) or now + 1) <= now then
      fail_left_running(ARGV[i], step, 'the action was cancelled meanwhile')
    end
  end
  if redis.call('HEXISTS', KEYS[5], 'finished_at') == 0 then finish_if_last() end
  return {''}
end
if a[1] == 'preparing' then
  -- a staged plan never started (its writer died): past its time, the nodes
  -- asked about are let go of, as they come due
  if tonumber(redis.call('HGET', KEYS[5], 'expires_at') or 0) < now then
    for i = 9, #ARGV, 2 do
      if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[4] then
        redis.call('HDEL', KEYS[2], ARGV[i])
        redis.call('ZREM', KEYS[3], ARGV[i])
      end
    end
  end
  return {''}
end
if a[1] ~= 'running' then return {''} end
local batch, action = tonumber(a[2]), a[3]
local lead, window = tonumber(ARGV[6]), tonumber(a[4]) + tonumber(ARGV[7])
-- The assignment field of a node's site's placement, from its inventory
-- entry (farm.coordination.placement.field_of): the node's site as Redis
-- holds it now, not as the worker last read it.
local function field_of(entry)
  local site = cjson.decode(entry).site
  if site == nil or site == 'default' then return 'placement' end
  return 'placement:' .. site
end
-- with no assignment ever published a lone worker owns every node; a site
-- placed on nobody has no placement, and nobody owns its nodes
local asg = redis.call('HMGET', KEYS[1], 'members', 'generation')
local members = asg[2] and cjson.decode(asg[1])
local placements = {}  -- field -> that site's placement, decoded once per call
local function placement_of(name)
  local entry = redis.call('HGET', KEYS[9], name)
  if not entry then return {} end
  local field = field_of(entry)
  if placements[field] == nil then
    placements[field] = cjson.decode(redis.call('HGET', KEYS[1], field) or '[]')
  end
  return placements[field]
end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - window)
local out = {''}
local retry = nil
local moved = 0  -- pending steps taken: the counters move once per call
for i = 9, #ARGV, 2 do
  local name, p = ARGV[i], tonumber(ARGV[i + 1])
  local mine = redis.call('HGET', KEYS[2], name) == ARGV[4]
  if mine and members then
    local placement = placement_of(name)
    mine = #placement == tonumber(ARGV[2]) and members[placement[p + 1] + 1] == ARGV[1]
  end
  local step = mine and cjson.decode(redis.call('HGET', KEYS[6], name))
  local due = false
  if step and step.state == 'pending' then
    local at = tonumber(redis.call('ZSCORE', KEYS[3], name) or now)
    due = at <= now + lead
    if not due and (retry == nil or at < retry) then retry = at end
  elseif step and step.state == 'running' and step.worker ~= ARGV[1] then
    -- (never its own: a worker knows whether it sent a step, and its outcome
    -- may still be on its way here; taking it again sent the BMC a second
    -- command when 10,000 outcomes queued behind a slow write)
    due = tonumber(redis.call('ZSCORE', KEYS[4], name) or now + 1) <= now
    if due and action ~= 'on' and action ~= 'off' then
      fail_left_running(name, step, action .. ' is not repeated (the BMC may have acted)')
      due = false
    end
  end
  if due then
    local send_at = math.max(step.not_before, now + lead)
    -- O(log n) whatever the wave: counting the window, not listing it, keeps
    -- a claim's cost to the steps it takes (a one-wave off of 10,000 nodes)
    local held = redis.call('ZCOUNT', KEYS[7], '(' .. (send_at - window), '+inf')
    if held >= batch then  -- full: the earliest moment one leaves the window
      local first = redis.call('ZRANGEBYSCORE', KEYS[7], '(' .. (send_at - window), '+inf',
                               'WITHSCORES', 'LIMIT', 0, 1)
      retry = tonumber(first[2]) + window
      break
    end
    if step.state == 'pending' then
      redis.call('ZREM', KEYS[3], name)
      moved = moved + 1
    end
    step.attempt = (step.attempt or 0) + 1
    step.state, step.worker, step.started_at = 'running', ARGV[1], send_at
    redis.call('HSET', KEYS[6], name, cjson.encode(step))
    redis.call('ZADD', KEYS[4], send_at + tonumber(ARGV[3]), name)
    redis.call('ZADD', KEYS[7], send_at, name .. ':' .. step.attempt)
    table.insert(out, name)
    table.insert(out, step.attempt)
    table.insert(out, string.format('%.6f', send_at))
  end
end
if moved > 0 then
  redis.call('HINCRBY', KEYS[5], 'pending', -moved)
  redis.call('HINCRBY', KEYS[5], 'running', moved)
end
if #out > 1 then  -- a cancelled or finished action leaves no window behind
  redis.call('EXPIRE', KEYS[7], math.ceil(window) + 60)
end
if retry then out[1] = string.format('%.6f', retry) end
finish_if_last()
return out
