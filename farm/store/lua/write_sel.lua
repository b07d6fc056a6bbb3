-- A batch of SEL passes in one round trip: each new entry goes to the event
-- stream and to the node's list of recent entries; the cursor is stored with
-- them, atomically, so an entry is never recorded twice nor skipped.
-- KEYS[1] inventory hash, KEYS[2] event stream, then per result: its state
-- hash and its recent-entries list. ARGV: maxlen, worker, recent, then per
-- result: name, polled_at, latency, error_kind, error, cursor (JSON),
-- cleared ('1' or ''), sizes (JSON: entries in the log, bytes free), n, then n x (id, at, sensor_type, sensor,
-- direction, description, json).
-- <task>_seen_at is Redis's own clock, as seen_at is for power: how old a
-- reading is (/ipmi) must not trust a worker's clock
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local seen = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local maxlen, worker, recent = ARGV[1], ARGV[2], tonumber(ARGV[3])
local written, a = 0, 4
for i = 3, #KEYS, 2 do
  local state, list = KEYS[i], KEYS[i + 1]
  local name, at, lat, kind, err = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4]
  local cursor, cleared, sizes, n = ARGV[a+5], ARGV[a+6], ARGV[a+7], tonumber(ARGV[a+8])
  local r = a + 9
  a = r + n * 7
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    if kind ~= '' then
      redis.call('HSET', state, 'sel_polled_at', at, 'sel_seen_at', seen, 'sel_error_kind', kind, 'sel_error', err)
    else
      redis.call('HSET', state, 'sel_polled_at', at, 'sel_seen_at', seen, 'sel_latency', lat, 'sel_error_kind', '',
                 'sel_error', '', 'sel_cursor', cursor, 'sel_worker', worker, 'sel_sizes', sizes)
      if cleared == '1' then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'node', name,
                   'type', 'sel-cleared', 'at', at)
      end
      for j = 0, n - 1 do
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'node', name, 'type', 'sel',
                   'entry', ARGV[r], 'at', ARGV[r+1], 'sensor_type', ARGV[r+2],
                   'sensor', ARGV[r+3], 'direction', ARGV[r+4], 'description', ARGV[r+5])
        redis.call('LPUSH', list, ARGV[r+6])
        r = r + 7
      end
      if n > 0 then redis.call('LTRIM', list, 0, recent - 1) end
    end
    written = written + 1
  end
end
return written
