-- The lease decides who leads: tooz's election has no lost-leadership event,
-- so a leader that was paused must find out here, atomically, that it is out.
-- KEYS[1] the lease, KEYS[2] the epoch counter; ARGV: member id, ttl (ms).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return redis.call('INCR', KEYS[2])
end
return -1
