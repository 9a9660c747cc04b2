-- KEYS: data. Returns {value, metadata|nil, version, pttl} or nil.
local f = redis.call('HMGET', KEYS[1], 'v', 'm', 'r')
if not f[1] then
  return false
end
return {f[1], f[2], f[3], redis.call('PTTL', KEYS[1])}
