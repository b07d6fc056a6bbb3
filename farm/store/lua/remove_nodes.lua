-- Remove nodes with everything farm holds of them, and take them out of the
-- counts, in one atomic call (a result written meanwhile cannot be counted
-- for a node that is gone). KEYS[1] the inventory hash, KEYS[2] control,
-- KEYS[3] the counts hash, KEYS[4] the polled zset, KEYS[5] the names zset,
-- KEYS[6] the inventory version, KEYS[7] the label index, KEYS[8] the Redfish
-- session tokens; then per node its
-- state, sensors and SEL keys. ARGV: the names. Returns how many were in the
-- inventory.
local counts = KEYS[3]
local function count(prefix, value, n)
  if value and value ~= '' then redis.call('HINCRBY', counts, prefix .. value, n) end
end
local removed = 0
for i, name in ipairs(ARGV) do
  local state = KEYS[8 + (i - 1) * 3 + 1]
  if redis.call('HDEL', KEYS[1], name) == 1 then
    removed = removed + 1
    local s = redis.call('HMGET', state, 'power_state', 'error_kind')
    count('power:', s[1], -1)
    count('failing:', s[2], -1)
  end
  redis.call('DEL', state, KEYS[8 + (i - 1) * 3 + 2], KEYS[8 + (i - 1) * 3 + 3])
  redis.call('HDEL', KEYS[7], name)
  redis.call('HDEL', KEYS[8], name)
  redis.call('HDEL', KEYS[2], name)
  redis.call('ZREM', KEYS[4], name)
  redis.call('ZREM', KEYS[5], name)
end
if removed > 0 then redis.call('INCR', KEYS[6]) end
return removed
