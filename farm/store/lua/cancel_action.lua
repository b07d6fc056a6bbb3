-- Cancel an action: its steps not started are dropped (state 'cancelled');
-- the ones running end as they will. KEYS[1] step-of, KEYS[2] steps zset,
-- KEYS[3] action hash, KEYS[4] its nodes hash, KEYS[5] actions version.
-- ARGV: id, who, ttl of a finished action, channel. Returns {state before,
-- steps dropped}.
if redis.replicate_commands then redis.replicate_commands() end
local state = redis.call('HGET', KEYS[3], 'state')
if state ~= 'running' then return {state or '', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local all = redis.call('HGETALL', KEYS[4])
local dropped = 0
for i = 1, #all, 2 do
  local step = cjson.decode(all[i + 1])
  if step.state == 'pending' then
    step.state, step.ended_at = 'cancelled', now
    redis.call('HSET', KEYS[4], all[i], cjson.encode(step))
    redis.call('ZREM', KEYS[2], all[i])
    if redis.call('HGET', KEYS[1], all[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], all[i]) end
    dropped = dropped + 1
  end
end
if dropped > 0 then  -- (not -0: Lua writes it "-0", which HINCRBY refuses)
  redis.call('HINCRBY', KEYS[3], 'pending', -dropped)
  redis.call('HINCRBY', KEYS[3], 'cancelled', dropped)
end
redis.call('HSET', KEYS[3], 'state', 'cancelled', 'cancelled_by', ARGV[2], 'cancelled_at', now)
if tonumber(redis.call('HGET', KEYS[3], 'running')) == 0 then
  redis.call('HSET', KEYS[3], 'finished_at', now)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {state, dropped}
