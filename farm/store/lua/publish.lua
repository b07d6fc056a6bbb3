-- Publish only while holding the lease (the fence), and only a change.
-- KEYS[1] the lease, KEYS[2] the assignment hash (also its channel);
-- ARGV: member id, epoch, placement JSON, members JSON, published_at.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local cur = redis.call('HMGET', KEYS[2], 'placement', 'members')
if cur[1] == ARGV[3] and cur[2] == ARGV[4] then return 0 end
local gen = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'placement', ARGV[3], 'members', ARGV[4], 'epoch', ARGV[2],
           'leader', ARGV[1], 'published_at', ARGV[5])
redis.call('PUBLISH', KEYS[2], gen)
return gen
