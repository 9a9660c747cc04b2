-- KEYS: data, index. ARGV: data prefix, name, delta, new version, expiry
-- mode, expiry ms. Returns the new count.
local data, idx = KEYS[1], KEYS[2]
local existed = redis.call('EXISTS', data)
local count = redis.pcall('HINCRBY', data, 'v', ARGV[3])
if type(count) == 'table' and count.err then
  return redis.error_reply('NOTCOUNTER ' .. count.err)
end
redis.call('HSET', data, 'r', ARGV[4])
if existed == 0 then
  set_expiry(data, ARGV[5], ARGV[6])
  index_add(idx, ARGV[1], ARGV[2])
end
return count
