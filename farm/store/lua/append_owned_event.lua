-- An event a worker records about a node it acts on (an action's outcome),
-- only while the current assignment still gives it that node: an outcome
-- buffered through a partition must not land on a node another worker owns.
-- KEYS[1] assignment hash, KEYS[2] event stream. ARGV: owner, its partition,
-- partitions, maxlen, then field/value pairs. Returns the event id, or ''.
local a = redis.call('HMGET', KEYS[1], 'members', 'placement')
if a[2] then
  local members, placement = cjson.decode(a[1]), cjson.decode(a[2])
  local p = tonumber(ARGV[2])
  if #placement ~= tonumber(ARGV[3]) or members[placement[p + 1] + 1] ~= ARGV[1] then
    return ''
  end
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
