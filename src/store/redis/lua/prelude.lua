-- Shared by every tower-kv script. Data keys are hashes {v = value,
-- m = JSON metadata, r = version}; the sorted set KEYS[#KEYS] indexes key
-- names (score 0, lexicographic) for `list`.

-- Index a key; on a new name, check two random names and drop dead ones,
-- so the index stays within about twice the live keys without a sweeper.
local function index_add(idx, data_prefix, name)
  if redis.call('ZADD', idx, 0, name) == 1 then
    for _, other in ipairs(redis.call('ZRANDMEMBER', idx, 2)) do
      if redis.call('EXISTS', data_prefix .. other) == 0 then
        redis.call('ZREM', idx, other)
      end
    end
  end
end

local function set_expiry(data, mode, ms)
  if mode == 'px' then
    redis.call('PEXPIRE', data, ms)
  elseif mode == 'pxat' then
    redis.call('PEXPIREAT', data, ms)
  end
end

-- Tells the processes watching this store that `name` changed (a channel
-- of '' means nobody watches it).
local function announce(channel, name)
  if channel ~= '' then
    redis.call('PUBLISH', channel, name)
  end
end
