-- Record a bulk power action and its steps, atomically, or nothing: refused
-- with {'unknown', name} for a node not in the inventory, {'busy', name,
-- action id} for a node another action has not finished with (one action a
-- node at a time, as a node lock) and {'invalid', name} for a send time
-- that is not a finite number. Every check runs before the first write: a
-- script that fails half-way is not rolled back. Workers follow {ns}:steps
-- (node -> not_before) for the nodes they own; the channel tells them to
-- look now. Names are read and written in chunks with one variadic command
-- each, so 10,000 steps cost milliseconds, not one call per step.
-- KEYS[1] name index (zset), KEYS[2] step-of hash, KEYS[3] steps zset,
-- KEYS[4] actions zset, KEYS[5] the action hash, KEYS[6] its nodes hash,
-- KEYS[7] actions version. ARGV: id, action, by, batch, interval,
-- spread_by, waves, channel, then name, wave, not_before triples (the
-- not_before as Python's repr of a float). Returns {'ok', created}.
if redis.replicate_commands then redis.replicate_commands() end
local CHUNK = 500  -- within Lua's stack for unpack()
local first, n = 9, (#ARGV - 8) / 3
for c = 0, n - 1, CHUNK do
  local names = {}
  for k = c, math.min(c + CHUNK, n) - 1 do
    local i = first + 3 * k
    local at = tonumber(ARGV[i + 2])
    if not at or at ~= at or at == math.huge or at == -math.huge then
      return {'invalid', ARGV[i]}
    end
    table.insert(names, ARGV[i])
  end
  local known = redis.call('ZMSCORE', KEYS[1], unpack(names))
  local other = redis.call('HMGET', KEYS[2], unpack(names))
  for j = 1, #names do
    if not known[j] then return {'unknown', names[j]} end
    if other[j] then return {'busy', names[j], other[j]} end
  end
end
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
for c = 0, n - 1, CHUNK do
  local owner, due, steps = {}, {}, {}
  for k = c, math.min(c + CHUNK, n) - 1 do
    local i = first + 3 * k
    local name, wave, at = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
    table.insert(owner, name); table.insert(owner, ARGV[1])
    table.insert(due, at); table.insert(due, name)
    table.insert(steps, name)
    -- the document by hand: at is a finite number as Python wrote it (checked
    -- above), wave an integer; cjson.encode per step was most of the time
    table.insert(steps, string.format('{"wave":%d,"not_before":%s,"state":"pending"}', wave, at))
  end
  redis.call('HSET', KEYS[2], unpack(owner))
  redis.call('ZADD', KEYS[3], unpack(due))
  redis.call('HSET', KEYS[6], unpack(steps))
end
redis.call('HSET', KEYS[5], 'id', ARGV[1], 'action', ARGV[2], 'by', ARGV[3], 'batch', ARGV[4],
           'interval', ARGV[5], 'spread_by', ARGV[6], 'waves', ARGV[7], 'created', now,
           'first_at', ARGV[11] or now, 'last_at', ARGV[#ARGV] or now, 'state', 'running',
           'total', n, 'pending', n, 'running', 0, 'done', 0, 'failed', 0, 'cancelled', 0)
redis.call('ZADD', KEYS[4], tonumber(now), ARGV[1])
redis.call('INCR', KEYS[7])
redis.call('PUBLISH', ARGV[8], ARGV[1])
return {'ok', now}
