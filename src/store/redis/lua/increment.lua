-- KEYS: data, index. ARGV: data prefix, name, delta, new version, expiry
-- mode, expiry ms, change channel ('' for none). Returns the new count.
-- Safe to replay: a retry of an increment that already landed finds its
-- version and returns the count.
local data, idx = KEYS[1], KEYS[2]
local current = redis.call('HGET', data, 'r')
if current == ARGV[4] then
  return tonumber(redis.call('HGET', data, 'v'))
end
local existed = current and 1 or 0
local count = redis.pcall('HINCRBY', data, 'v', ARGV[3])
if type(count) == 'table' and count.err then
  return redis.error_reply('NOTCOUNTER ' .. count.err)
end
redis.call('HSET', data, 'r', ARGV[4])
if existed == 0 then
  set_expiry(data, ARGV[5], ARGV[6])
  index_add(idx, ARGV[1], ARGV[2])
end
announce(ARGV[7], ARGV[2])
return count
