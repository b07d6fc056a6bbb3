-- Let go of the lease only if we hold it. KEYS[1] the lease; ARGV[1] member id.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
