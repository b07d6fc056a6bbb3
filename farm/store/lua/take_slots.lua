-- Fleet-wide spacing of farm's own power-on corrections: grant at most
-- `batch` in any `interval` seconds, across all workers, so a fleet-wide
-- desired state after an outage does not switch the room on at once.
-- KEYS[1] the grants zset. ARGV: wanted, batch, interval, a unique tag.
-- Returns {granted, retry_at or ''}.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local batch, interval = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - interval)
local room = batch - redis.call('ZCARD', KEYS[1])
local granted = math.max(0, math.min(room, tonumber(ARGV[1])))
for i = 1, granted do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i) end
redis.call('EXPIRE', KEYS[1], math.ceil(interval) + 1)
if granted < tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {granted, tostring(tonumber(oldest[2] or now) + interval)}
end
return {granted, ''}
