-- One round trip for a whole batch of poll results; compare-and-write is
-- atomic, so the event stream records each change exactly once.
-- KEYS[1] the inventory hash, KEYS[2] the event stream, KEYS[3] the counts
-- hash, KEYS[4] the polled zset, KEYS[4 + i] the state hash of result i.
-- ARGV: maxlen, worker, then per result: name, polled_at, latency,
-- power_state, error_kind, error. Every key comes through KEYS (so a Redis
-- Cluster could route it). The counts (power:<state>, failing:<kind>) and
-- the polled zset (name -> seen_at) change with the state in this one call,
-- so `farm nodes summary` reads them instead of every node.
local maxlen, worker = ARGV[1], ARGV[2]
local written = 0
-- seen_at is Redis's own clock: staleness must not trust a worker's clock
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local seen = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local stream, counts, polled = KEYS[2], KEYS[3], KEYS[4]
local function count(prefix, value, n)
  if value and value ~= '' then redis.call('HINCRBY', counts, prefix .. value, n) end
end
for i = 5, #KEYS do
  local a = 3 + (i - 5) * 6
  local name, at, lat = ARGV[a], ARGV[a+1], ARGV[a+2]
  local ps, kind, err = ARGV[a+3], ARGV[a+4], ARGV[a+5]
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    local key = KEYS[i]
    local prev = redis.call('HMGET', key, 'power_state', 'reachable', 'error_kind')
    redis.call('HSET', key, 'worker', worker, 'seen_at', seen)
    redis.call('ZADD', polled, seen, name)
    if prev[3] ~= kind then
      count('failing:', prev[3], -1)
      count('failing:', kind, 1)
    end
    if kind == '' then
      redis.call('HSET', key, 'power_state', ps, 'polled_at', at, 'latency', lat,
                 'last_ok_at', at, 'reachable', '1', 'consecutive_failures', '0',
                 'error_kind', '', 'last_error', '')
      if prev[2] == '0' then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'node', name,
                   'type', 'recovered', 'at', at)
      end
      if prev[1] ~= ps then
        count('power:', prev[1], -1)
        count('power:', ps, 1)
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'node', name,
                   'type', 'power', 'from', prev[1] or '', 'to', ps, 'at', at)
      end
    else
      redis.call('HSET', key, 'polled_at', at, 'latency', lat, 'reachable', '0',
                 'error_kind', kind, 'last_error', err)
      redis.call('HINCRBY', key, 'consecutive_failures', 1)
      if prev[2] ~= '0' then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'node', name,
                   'type', 'failing', 'error_kind', kind, 'at', at)
      end
    end
    written = written + 1
  end
end
return written
