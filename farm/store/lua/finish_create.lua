-- The end of a staged plan (create_action.lua, state 'preparing'):
-- 'start' makes it 'running' (workers then claim its steps), refused with
-- {'expired'} past its expires_at (another plan may hold some of its nodes
-- by now); 'abort' lets go of a page of its nodes (those it still holds) and,
-- with ARGV[3] = 'last', drops the action. KEYS[1] step-of hash, KEYS[2]
-- steps zset, KEYS[3] actions zset, KEYS[4] the action hash, KEYS[5] its
-- nodes hash, KEYS[6] actions version, KEYS[7] stagings zset. ARGV: id,
-- 'start' or 'abort', 'last' or '', channel, then names (abort). Returns
-- {'ok'} or {'expired'}.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
if ARGV[2] == 'start' then
  local a = redis.call('HMGET', KEYS[4], 'state', 'expires_at')
  if a[1] ~= 'preparing' or tonumber(a[2]) < now then return {'expired'} end
  redis.call('HSET', KEYS[4], 'state', 'running')
  redis.call('HDEL', KEYS[4], 'expires_at')
  redis.call('ZREM', KEYS[7], ARGV[1])
  redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[4], 'created'), ARGV[1])
  redis.call('INCR', KEYS[6])
  redis.call('PUBLISH', ARGV[4], ARGV[1])
  return {'ok'}
end
for i = 5, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
if ARGV[3] == 'last' then
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[7], ARGV[1])
end
return {'ok'}
