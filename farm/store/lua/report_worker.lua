-- A worker's report, refreshed every second, and what it follows, in one
-- round trip. The report expires on its own; {ns}:workers indexes the
-- reporting ids by the Redis time of their last report, so `farm status`
-- reads the reports without scanning the keyspace; ids silent for a day
-- (killed, never forgotten) leave the index here.
-- KEYS[1] the worker's report hash, KEYS[2] the workers zset, KEYS[3] the
-- inventory version, KEYS[4] the assignment hash, KEYS[5] the control
-- version, KEYS[6] the actions version. ARGV: ttl in ms, member id, then
-- field, value pairs. Returns {inventory version, generation, seconds,
-- microseconds, control version, actions version}.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 86400)
return {redis.call('GET', KEYS[3]) or '0', redis.call('HGET', KEYS[4], 'generation') or '0',
        t[1], t[2], redis.call('GET', KEYS[5]) or '0', redis.call('GET', KEYS[6]) or '0'}
