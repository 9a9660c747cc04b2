-- KEYS: data, index. ARGV: name, change channel ('' for none). Returns how
-- many entries were removed.
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed > 0 then
  announce(ARGV[2], ARGV[1])
end
return removed
