-- Record a bulk power action's steps, or nothing: refused with {'unknown',
-- name} for a node not in the inventory, {'busy', name, action id} for a
-- node another action has not finished with (one action a node at a time,
-- as a node lock) and {'invalid', name} for a send time that is not a
-- finite number. Every check runs before the first write: a script that
-- fails half-way is not rolled back. Names are read and written in chunks
-- with one variadic command each.
--
-- A plan of up to a page of steps is written by one call, state 'running'.
-- A larger one is staged a page a call (each a few milliseconds: one call of
-- 10,000 steps held Redis for 36 ms), state 'preparing', which no worker
-- claims, until finish_create.lua makes it 'running'. A staging whose
-- writer died holds its nodes only until its `expires_at`: past it, a node
-- it holds is free to another plan (and finish_create refuses to start it).
-- KEYS[1] name index (zset), KEYS[2] step-of hash, KEYS[3] steps zset,
-- KEYS[4] actions zset, KEYS[5] the action hash, KEYS[6] its nodes hash,
-- KEYS[7] actions version, KEYS[8] stagings (zset: id -> expires_at). ARGV: id, action, by, batch, interval,
-- spread_by, waves, channel, state ('running' or 'preparing'), seconds a
-- staging may take, then name, wave, not_before triples (the not_before as
-- Python's repr of a float). Returns {'ok', created}.
if redis.replicate_commands then redis.replicate_commands() end
local CHUNK = 500  -- within Lua's stack for unpack()
local first, n = 11, (#ARGV - 10) / 3
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local staged = redis.call('HMGET', KEYS[5], 'state', 'expires_at')
if staged[1] and staged[1] ~= 'preparing' then return {'busy', ARGV[first] or '', ARGV[1]} end
if staged[1] and tonumber(staged[2]) < tonumber(now) then return {'expired', ARGV[1]} end
local stale = {}  -- action id -> whether it is a staging past its time
local function free_from(other)
  if other == ARGV[1] then return true end
  if stale[other] == nil then
    local until_ = tonumber(redis.call('ZSCORE', KEYS[8], other) or nil)
    stale[other] = until_ ~= nil and until_ < tonumber(now)
  end
  return stale[other]
end
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
    if other[j] and not free_from(other[j]) then return {'busy', names[j], other[j]} end
  end
end
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
if staged[1] then  -- a further page of a staging
  redis.call('HINCRBY', KEYS[5], 'total', n)
  redis.call('HINCRBY', KEYS[5], 'pending', n)
  redis.call('HSET', KEYS[5], 'last_at', ARGV[#ARGV])
  return {'ok', now}
end
redis.call('HSET', KEYS[5], 'id', ARGV[1], 'action', ARGV[2], 'by', ARGV[3], 'batch', ARGV[4],
           'interval', ARGV[5], 'spread_by', ARGV[6], 'waves', ARGV[7], 'created', now,
           'first_at', ARGV[13] or now, 'last_at', ARGV[#ARGV] or now, 'state', ARGV[9],
           'total', n, 'pending', n, 'running', 0, 'done', 0, 'failed', 0, 'cancelled', 0)
if ARGV[9] == 'preparing' then
  local expires = tonumber(now) + tonumber(ARGV[10])
  redis.call('HSET', KEYS[5], 'expires_at', expires)
  redis.call('ZADD', KEYS[8], expires, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', tonumber(now) - 86400)
  -- a staging never started goes by itself (its nodes as they come due)
  for i = 5, 6 do redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[10])) + 86400) end
  return {'ok', now}
end
redis.call('ZADD', KEYS[4], tonumber(now), ARGV[1])
redis.call('INCR', KEYS[7])
redis.call('PUBLISH', ARGV[8], ARGV[1])
return {'ok', now}
