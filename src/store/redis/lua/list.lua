-- KEYS: index. ARGV: data prefix, name prefix, cursor ('' for the first
-- page), limit. Returns {{name, pttl, metadata|nil}...}, more (0|1).
-- Index entries whose data key has gone are removed on the way.
local idx, data_prefix, limit = KEYS[1], ARGV[1], tonumber(ARGV[4])
local min = '[' .. ARGV[2]
if ARGV[3] ~= '' then
  min = '(' .. ARGV[3]
end
local max = '[' .. ARGV[2] .. '\255'
local out = {}
local more = false
while not more do
  local batch = redis.call('ZRANGEBYLEX', idx, min, max, 'LIMIT', 0, limit + 1 - #out)
  if #batch == 0 then
    break
  end
  for _, name in ipairs(batch) do
    local data = data_prefix .. name
    local pttl = redis.call('PTTL', data)
    if pttl == -2 then
      redis.call('ZREM', idx, name)
    elseif #out == limit then
      more = true
      break
    else
      out[#out + 1] = {name, pttl, redis.call('HGET', data, 'm')}
    end
    min = '(' .. name
  end
end
return {out, more and 1 or 0}
