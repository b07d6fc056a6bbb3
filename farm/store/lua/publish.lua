-- Publish only while holding the lease (the fence), and only a change.
-- KEYS[1] the lease, KEYS[2] the assignment hash (also its channel);
-- ARGV: member id, epoch, members JSON, sites JSON, published_at, then
-- field, placement JSON pairs, one per site (placement for the default
-- site, placement:<site> for the others).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local cur = redis.call('HGETALL', KEYS[2])
local have, old = {}, {}
for i = 1, #cur, 2 do
  have[cur[i]] = cur[i + 1]
  if string.sub(cur[i], 1, 9) == 'placement' then table.insert(old, cur[i]) end
end
local same = have['members'] == ARGV[3] and have['sites'] == ARGV[4]
local fields = 0
for i = 6, #ARGV, 2 do
  fields = fields + 1
  if have[ARGV[i]] ~= ARGV[i + 1] then same = false end
end
if same and #old == fields then return 0 end
if #old > 0 then redis.call('HDEL', KEYS[2], unpack(old)) end
local gen = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'members', ARGV[3], 'sites', ARGV[4], 'epoch', ARGV[2],
           'leader', ARGV[1], 'published_at', ARGV[5])
if #ARGV >= 6 then redis.call('HSET', KEYS[2], unpack(ARGV, 6)) end
redis.call('PUBLISH', KEYS[2], gen)
return gen
