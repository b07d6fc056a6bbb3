-- Record a bulk power action and its steps, atomically, or nothing: refused
-- with {'unknown', name} for a node not in the inventory and {'busy', name,
-- action id} for a node another action has not finished with (one action a
-- node at a time, as a node lock). Workers follow {ns}:steps (node ->
-- not_before) for the nodes they own; the channel tells them to look now.
-- KEYS[1] inventory, KEYS[2] step-of hash, KEYS[3] steps zset, KEYS[4]
-- actions zset, KEYS[5] the action hash, KEYS[6] its nodes hash, KEYS[7]
-- actions version. ARGV: id, action, by, batch, interval, spread_by, waves,
-- channel, then name, wave, not_before triples. Returns {'ok', created}.
if redis.replicate_commands then redis.replicate_commands() end
local n = 0
for i = 9, #ARGV, 3 do
  local name = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], name) == 0 then return {'unknown', name} end
  local other = redis.call('HGET', KEYS[2], name)
  if other then return {'busy', name, other} end
  n = n + 1
end
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
for i = 9, #ARGV, 3 do
  local name, wave, at = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  redis.call('HSET', KEYS[2], name, ARGV[1])
  redis.call('ZADD', KEYS[3], at, name)
  redis.call('HSET', KEYS[6], name, cjson.encode({wave = wave, not_before = tonumber(at),
                                                   state = 'pending'}))
end
redis.call('HSET', KEYS[5], 'id', ARGV[1], 'action', ARGV[2], 'by', ARGV[3], 'batch', ARGV[4],
           'interval', ARGV[5], 'spread_by', ARGV[6], 'waves', ARGV[7], 'created', now,
           'first_at', ARGV[11] or now, 'last_at', ARGV[#ARGV] or now, 'state', 'running',
           'total', n, 'pending', n, 'running', 0, 'done', 0, 'failed', 0, 'cancelled', 0)
redis.call('ZADD', KEYS[4], tonumber(now), ARGV[1])
redis.call('INCR', KEYS[7])
redis.call('PUBLISH', ARGV[8], ARGV[1])
return {'ok', now}
