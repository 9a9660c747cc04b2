-- KEYS: data, index. ARGV: data prefix, name, condition (any|absent|version),
-- expected version, value, has metadata (0|1), metadata, new version,
-- expiry mode (none|px|pxat), expiry ms, change channel ('' for none).
-- Returns 1, or nil when the
-- condition failed. Safe to replay: a retry of a write that already landed
-- finds its own new version and succeeds without writing again.
local data, idx = KEYS[1], KEYS[2]
local condition = ARGV[3]
local current = redis.call('HGET', data, 'r')
if current == ARGV[8] then
  return 1
end
if condition == 'absent' then
  if current then
    return false
  end
elseif condition == 'version' then
  if current ~= ARGV[4] then
    return false
  end
end
redis.call('DEL', data)
if ARGV[6] == '1' then
  redis.call('HSET', data, 'v', ARGV[5], 'r', ARGV[8], 'm', ARGV[7])
else
  redis.call('HSET', data, 'v', ARGV[5], 'r', ARGV[8])
end
set_expiry(data, ARGV[9], ARGV[10])
index_add(idx, ARGV[1], ARGV[2])
announce(ARGV[11], ARGV[2])
return 1
