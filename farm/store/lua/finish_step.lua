-- A step's outcome, from the worker that ran it, and only while the step
-- is still that run's (its worker and attempt): 'done' or 'failed' record
-- it and an event, 'pending' puts it back (nothing reached the BMC, the
-- worker's acting lease ran out), or ends it 'cancelled' when the action was
-- cancelled meanwhile: a step put back into a cancelled action would be
-- taken by nobody and hold its node for good. The action ends with its last
-- step.
-- KEYS[1] step-of, KEYS[2] steps zset, KEYS[3] running zset, KEYS[4] action
-- hash, KEYS[5] its nodes hash, KEYS[6] event stream, KEYS[7] its grants.
-- ARGV: action id, name, worker, attempt, outcome, error, power after,
-- events maxlen, latency, ttl of a finished action. Returns 1, or 0 if the
-- step is no longer this run's.
if redis.replicate_commands then redis.replicate_commands() end
local raw = redis.call('HGET', KEYS[5], ARGV[2])
if not raw then return 0 end
local step = cjson.decode(raw)
if step.state ~= 'running' or step.worker ~= ARGV[3] or tostring(step.attempt) ~= ARGV[4] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'running', -1)
local outcome = ARGV[5]
if outcome == 'pending' then
  if redis.call('HGET', KEYS[4], 'state') == 'running' then
    step.state = 'pending'
    redis.call('ZADD', KEYS[2], step.not_before, ARGV[2])
    redis.call('HINCRBY', KEYS[4], 'pending', 1)
    redis.call('HSET', KEYS[5], ARGV[2], cjson.encode(step))
    return 1
  end
  outcome = 'cancelled'  -- nothing reached the BMC, and nothing will
end
step.state, step.ended_at, step.latency = outcome, now, tonumber(ARGV[9])
if ARGV[6] ~= '' then step.error = ARGV[6] end
if ARGV[7] ~= '' then step.power_after = ARGV[7] end
redis.call('HSET', KEYS[5], ARGV[2], cjson.encode(step))
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[4], outcome, 1)
local a = redis.call('HMGET', KEYS[4], 'action', 'by', 'pending', 'running', 'state')
if outcome ~= 'cancelled' then  -- (as the steps that cancel dropped: no event)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], '*', 'node', ARGV[2], 'type', 'action',
             'action', a[1], 'by', a[2], 'outcome', outcome == 'done' and 'ok' or 'failed',
             'worker', ARGV[3], 'error', ARGV[6], 'latency', ARGV[9], 'action_id', ARGV[1])
end
if tonumber(a[3]) + tonumber(a[4]) == 0 then
  if a[5] == 'running' then redis.call('HSET', KEYS[4], 'state', 'done') end
  redis.call('HSET', KEYS[4], 'finished_at', now)
  for i = 4, 5 do redis.call('EXPIRE', KEYS[i], ARGV[10]) end
  redis.call('DEL', KEYS[7])
end
return 1
