-- A batch of sensors passes in one round trip. Each reading replaces the
-- last; a reading whose threshold status moves into or out of a non-OK
-- state (nc, cr, nr) appends a `sensor` event, exactly once even if two
-- workers briefly poll the same node (the compare-and-write is atomic).
-- KEYS[1] inventory hash, KEYS[2] event stream, then per result: its state
-- hash and its sensors hash. ARGV: maxlen, worker, then per result: name,
-- polled_at, latency, error_kind, error, n, watts (the DCMI reading, or
-- 'inactive' / 'unsupported'), device (JSON of who the BMC is, '' when it
-- refused Get Device ID: what is stored is kept), then n x (key, status,
-- value, unit, type, json).
-- <task>_seen_at is Redis's own clock, as seen_at is for power: how old a
-- reading is (/ipmi) must not trust a worker's clock
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local seen = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local maxlen, worker = ARGV[1], ARGV[2]
local bad = {nc = true, cr = true, nr = true}
local written, a = 0, 3
for i = 3, #KEYS, 2 do
  local state, sensors = KEYS[i], KEYS[i + 1]
  local name, at, lat, kind, err = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4]
  local n, watts, device = tonumber(ARGV[a+5]), ARGV[a+6], ARGV[a+7]
  local r = a + 8
  a = r + n * 6
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    if kind ~= '' then
      redis.call('HSET', state, 'sensors_polled_at', at, 'sensors_seen_at', seen, 'sensors_error_kind', kind,
                 'sensors_error', err, 'sensors_worker', worker)
    else
      redis.call('HSET', state, 'sensors_polled_at', at, 'sensors_seen_at', seen, 'sensors_latency', lat,
                 'sensors_error_kind', '', 'sensors_error', '', 'sensors_worker', worker,
                 'power_watts', watts)
      if device ~= '' then redis.call('HSET', state, 'bmc_device', device) end
      local keep = {}
      for j = 0, n - 1 do
        local k, status, value, unit, stype, json = ARGV[r], ARGV[r+1], ARGV[r+2], ARGV[r+3], ARGV[r+4], ARGV[r+5]
        r = r + 6
        keep[k] = true
        local old = redis.call('HGET', sensors, k)
        local before = 'ok'
        if old then before = cjson.decode(old).status end
        redis.call('HSET', sensors, k, json)
        if before ~= status and (bad[before] or bad[status]) then
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'node', name, 'type', 'sensor',
                     'sensor', k, 'sensor_type', stype, 'from', before, 'to', status,
                     'value', value, 'unit', unit, 'at', at)
        end
      end
      for _, k in ipairs(redis.call('HKEYS', sensors)) do
        if not keep[k] then redis.call('HDEL', sensors, k) end  -- gone from the SDR
      end
    end
    written = written + 1
  end
end
return written
