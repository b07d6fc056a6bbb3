-- Build the counts, the polled zset and the names zset from scratch, from
-- the inventory and every node's state, atomically: on a farm written by a
-- version without them, or when an operator asks (`farm nodes summary
-- --recount`). KEYS[1] the inventory hash, KEYS[2] the inventory version,
-- KEYS[3] counts, KEYS[4] polled, KEYS[5] names, KEYS[6] the layout key,
-- then the state hash of each name. ARGV: the inventory version the names
-- were read at, the layout to record, then every name in the inventory.
-- Returns the node count, or -1 when the inventory changed since the names
-- were read (read them again and retry).
local names = #ARGV - 2
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1])
   or redis.call('HLEN', KEYS[1]) ~= names then
  return -1
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
local power, failing = {}, {}
for i = 1, names do
  local name = ARGV[2 + i]
  redis.call('ZADD', KEYS[5], 0, name)
  local s = redis.call('HMGET', KEYS[6 + i], 'power_state', 'error_kind', 'seen_at', 'polled_at')
  if s[1] and s[1] ~= '' then power[s[1]] = (power[s[1]] or 0) + 1 end
  if s[2] and s[2] ~= '' then failing[s[2]] = (failing[s[2]] or 0) + 1 end
  local at = (s[3] and s[3] ~= '' and s[3]) or (s[4] and s[4] ~= '' and s[4])
  if at then redis.call('ZADD', KEYS[4], at, name) end
end
for k, n in pairs(power) do redis.call('HSET', KEYS[3], 'power:' .. k, n) end
for k, n in pairs(failing) do redis.call('HSET', KEYS[3], 'failing:' .. k, n) end
redis.call('SET', KEYS[6], ARGV[2])
return names
