-- All-or-nothing GCRA over several buckets on the server's clock; mirrors
-- src/store/gcra.rs. KEYS: one data key per bucket, then the index. ARGV:
-- data prefix, then per bucket: name, interval µs, burst, cost, new version.
-- Returns {allowed, {allowed, remaining, retry_after µs, reset_after µs}...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS - 1
local buckets = {}
local all_allowed = true
for i = 1, n do
  local a = 1 + (i - 1) * 5
  local interval, burst, cost = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local tat = now
  local stored = redis.call('HGET', KEYS[i], 'v')
  if stored then
    local s = tonumber(stored)
    if not s then
      return redis.error_reply('NOTCOUNTER value is not a GCRA timestamp')
    end
    if s > now then
      tat = s
    end
  end
  local tolerance = interval * burst
  local new_tat = tat + interval * cost
  local allow_at = new_tat - tolerance
  local b = {interval = interval, tolerance = tolerance, tat = tat, new_tat = new_tat}
  if now >= allow_at then
    b.allowed = 1
    b.retry = 0
  else
    b.allowed = 0
    b.retry = allow_at - now
    all_allowed = false
  end
  buckets[i] = b
end
local states = {}
for i, b in ipairs(buckets) do
  local used = b.tat - now
  if all_allowed then
    used = b.new_tat - now
    local data = KEYS[i]
    local a = 1 + (i - 1) * 5
    redis.call('HSET', data, 'v', string.format('%.0f', b.new_tat), 'r', ARGV[a + 5])
    redis.call('PEXPIRE', data, math.floor(used / 1000) + 1)
    index_add(KEYS[#KEYS], ARGV[1], ARGV[a + 1])
  end
  local remaining = math.floor(math.max(b.tolerance - used, 0) / b.interval)
  states[i] = {b.allowed, remaining, b.retry, used}
end
return {all_allowed and 1 or 0, states}
