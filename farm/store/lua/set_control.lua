-- Change what farm keeps for a node (desired power state, maintenance) and
-- record who did it, atomically: refused (-1) for a node not in the
-- inventory, and (-2) when a worker decided it for a node it no longer owns
-- (a decision taken before a partition, written after it healed).
-- KEYS[1] inventory hash, KEYS[2] control hash, KEYS[3] control version,
-- KEYS[4] event stream, KEYS[5] assignment hash. ARGV: name, maxlen, event
-- type, who, owner ('' for an operator), its partition, partitions, then
-- field/value pairs ('' removes the field).
if redis.replicate_commands then redis.replicate_commands() end
-- The assignment field of a node's site's placement, from its inventory
-- entry (farm.coordination.placement.field_of): the node's site as Redis
-- holds it now, not as the worker last read it.
local function field_of(entry)
  local site = cjson.decode(entry).site
  if site == nil or site == 'default' then return 'placement' end
  return 'placement:' .. site
end
local name = ARGV[1]
local entry = redis.call('HGET', KEYS[1], name)
if not entry then return -1 end
if ARGV[5] ~= '' then
  local a = redis.call('HMGET', KEYS[5], 'members', field_of(entry), 'generation')
  if a[3] then  -- with no placement ever published a lone worker owns every node
    -- (and a site placed on nobody has none: nobody owns its nodes)
    local members, placement = cjson.decode(a[1]), cjson.decode(a[2] or '[]')
    local p = tonumber(ARGV[6])
    if #placement ~= tonumber(ARGV[7]) or members[placement[p + 1] + 1] ~= ARGV[5] then
      return -2
    end
  end
end
local raw = redis.call('HGET', KEYS[2], name)
local t = {}
if raw then t = cjson.decode(raw) end
local event = {'node', name, 'type', ARGV[3], 'by', ARGV[4]}
for i = 8, #ARGV, 2 do
  if ARGV[i + 1] == '' then t[ARGV[i]] = nil else t[ARGV[i]] = ARGV[i + 1] end
  table.insert(event, ARGV[i])
  table.insert(event, ARGV[i + 1])
end
if next(t) == nil then
  redis.call('HDEL', KEYS[2], name)
else
  redis.call('HSET', KEYS[2], name, cjson.encode(t))
end
local tm = redis.call('TIME')
table.insert(event, 'at')
table.insert(event, tm[1] .. '.' .. string.format('%06d', tonumber(tm[2])))
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', unpack(event))
return redis.call('INCR', KEYS[3])
