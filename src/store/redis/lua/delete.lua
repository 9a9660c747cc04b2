-- KEYS: data, index. ARGV: name. Returns how many entries were removed.
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
