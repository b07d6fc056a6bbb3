-- A worker takes its nodes' due steps of one action, within the action's
-- spacing: at most `batch` steps started in any `interval` seconds, fleet
-- wide (a wave that ran late does not stack onto the next one), counted by
-- Redis's clock. A step is taken only while the assignment still gives the
-- worker its node and the action still runs. A step left running past its
-- deadline (its worker died) is taken again for on and off, which are safe
-- to repeat, and failed for cycle and reset, which are not.
-- KEYS[1] assignment, KEYS[2] step-of, KEYS[3] steps zset, KEYS[4] running
-- zset, KEYS[5] action hash, KEYS[6] its nodes hash, KEYS[7] its grants zset.
-- ARGV: worker, partitions, hold (seconds a step may run before another
-- worker may take it), action id, ttl of a finished action, then name,
-- partition pairs, earliest due first. Returns {retry_at or '', name,
-- attempt, name, attempt, ...}: retry_at is when to ask again for the steps
-- not taken (the spacing is full, or Redis's clock says not yet).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local a = redis.call('HMGET', KEYS[5], 'state', 'batch', 'interval', 'action')
if a[1] ~= 'running' then return {''} end
local batch, interval, action = tonumber(a[2]), tonumber(a[3]), a[4]
local members, placement
local asg = redis.call('HMGET', KEYS[1], 'members', 'placement')
if asg[2] then members, placement = cjson.decode(asg[1]), cjson.decode(asg[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - interval)
local room = batch - redis.call('ZCARD', KEYS[7])
local out = {''}
local retry = nil
for i = 6, #ARGV, 2 do
  local name, p = ARGV[i], tonumber(ARGV[i + 1])
  local mine = redis.call('HGET', KEYS[2], name) == ARGV[4]
  if mine and placement then
    mine = #placement == tonumber(ARGV[2]) and members[placement[p + 1] + 1] == ARGV[1]
  end
  local step = mine and cjson.decode(redis.call('HGET', KEYS[6], name))
  local due = false
  if step and step.state == 'pending' then
    local at = tonumber(redis.call('ZSCORE', KEYS[3], name) or now)
    due = at <= now
    if not due and (retry == nil or at < retry) then retry = at end
  elseif step and step.state == 'running' then
    due = tonumber(redis.call('ZSCORE', KEYS[4], name) or now + 1) <= now
    if due and action ~= 'on' and action ~= 'off' then
      step.state, step.ended_at = 'failed', now
      step.error = 'worker ' .. (step.worker or '?') .. ' stopped while running it; ' ..
                   action .. ' is not repeated (the BMC may have acted)'
      redis.call('HSET', KEYS[6], name, cjson.encode(step))
      redis.call('ZREM', KEYS[4], name)
      redis.call('HDEL', KEYS[2], name)
      redis.call('HINCRBY', KEYS[5], 'running', -1)
      redis.call('HINCRBY', KEYS[5], 'failed', 1)
      due = false
    end
  end
  if due then
    if room <= 0 then
      local oldest = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
      retry = tonumber(oldest[2] or now) + interval
      break
    end
    room = room - 1
    if step.state == 'pending' then
      redis.call('ZREM', KEYS[3], name)
      redis.call('HINCRBY', KEYS[5], 'pending', -1)
      redis.call('HINCRBY', KEYS[5], 'running', 1)
    end
    step.attempt = (step.attempt or 0) + 1
    step.state, step.worker, step.started_at = 'running', ARGV[1], now
    redis.call('HSET', KEYS[6], name, cjson.encode(step))
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), name)
    redis.call('ZADD', KEYS[7], now, name .. ':' .. step.attempt)
    redis.call('EXPIRE', KEYS[7], math.ceil(interval) + 60)  -- a cancelled action leaves none
    table.insert(out, name)
    table.insert(out, step.attempt)
  end
end
if retry then out[1] = string.format('%.6f', retry) end
local left = tonumber(redis.call('HGET', KEYS[5], 'pending')) +
             tonumber(redis.call('HGET', KEYS[5], 'running'))
if left == 0 then  -- its last steps failed here (cycle or reset left by a dead worker)
  redis.call('HSET', KEYS[5], 'state', 'done', 'finished_at', now)
  redis.call('EXPIRE', KEYS[5], ARGV[5])
  redis.call('EXPIRE', KEYS[6], ARGV[5])
  redis.call('DEL', KEYS[7])
end
return out
