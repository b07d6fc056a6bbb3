-- An event a worker records about a node it acts on (an action's outcome),
-- only while the current assignment still gives it that node: an outcome
-- buffered through a partition must not land on a node another worker owns.
-- KEYS[1] assignment hash, KEYS[2] event stream, KEYS[3] inventory hash.
-- ARGV: owner, its partition, partitions, maxlen, the node, then field/value
-- pairs. Returns the event id, or ''.
-- The assignment field of a node's site's placement, from its inventory
-- entry (farm.coordination.placement.field_of): the node's site as Redis
-- holds it now, not as the worker last read it.
local function field_of(entry)
  local site = cjson.decode(entry).site
  if site == nil or site == 'default' then return 'placement' end
  return 'placement:' .. site
end
local entry = redis.call('HGET', KEYS[3], ARGV[5])
if not entry then return '' end
local a = redis.call('HMGET', KEYS[1], 'members', field_of(entry), 'generation')
if a[3] then  -- none published: a lone worker; a site placed on nobody: no owner
  local members, placement = cjson.decode(a[1]), cjson.decode(a[2] or '[]')
  local p = tonumber(ARGV[2])
  if #placement ~= tonumber(ARGV[3]) or members[placement[p + 1] + 1] ~= ARGV[1] then
    return ''
  end
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 6))
