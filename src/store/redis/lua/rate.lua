-- All-or-nothing rate decision over several buckets on the server's clock.
-- Mirrors src/store/rate.rs line for line. KEYS: one data key per bucket,
-- then the index. ARGV: data prefix, then per bucket 6 values: name,
-- algorithm (gcra|fixed|sliding), period µs (GCRA interval or window),
-- capacity (burst or limit), cost, new version.
-- Returns {allowed, {allowed, remaining, retry_after µs, reset_after µs}...}.
-- Safe to replay: a retry of a decision that was already charged finds its
-- version in a bucket and answers "allowed" with the state as it now is,
-- charging nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor, max, min = math.floor, math.max, math.min

local function fields(stored)
  local out = {}
  if not stored then
    return out
  end
  for f in string.gmatch(stored, '[^:]+') do
    local n = tonumber(f)
    if not n or n < 0 or n ~= floor(n) or not string.match(f, '^%d+$') then
      return {}
    end
    out[#out + 1] = n
  end
  return out
end

local function state(allowed, remaining, retry, reset)
  return {allowed and 1 or 0, remaining, retry, reset}
end

local function gcra(interval, burst, cost, f)
  interval = max(interval, 1)
  local tolerance = interval * burst
  local tat = now
  if #f == 1 and f[1] > now then
    tat = f[1]
  end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - tolerance
  local function remaining(used)
    return floor(max(tolerance - used, 0) / interval)
  end
  local unconsumed = state(true, remaining(tat - now), 0, tat - now)
  if now >= allow_at then
    local used = new_tat - now
    return state(true, remaining(used), 0, used), unconsumed, string.format('%.0f', new_tat), used
  end
  local denied = state(false, remaining(tat - now), allow_at - now, tat - now)
  return denied, denied, nil, 0
end

local function fixed(window, limit, cost, f)
  local start = now - now % window
  local finish = start + window
  local count = 0
  if #f == 2 and f[1] == start then
    count = f[2]
  end
  local function reset(c)
    if c > 0 then return finish - now end
    return 0
  end
  local unconsumed = state(true, max(limit - count, 0), 0, reset(count))
  if count + cost <= limit then
    local after = count + cost
    return state(true, limit - after, 0, reset(after)), unconsumed,
      string.format('%.0f:%.0f', start, after), finish - now
  end
  local denied = state(false, max(limit - count, 0), finish - now, reset(count))
  return denied, denied, nil, 0
end

local function room_share(room, count, window)
  if count == 0 then
    return window
  end
  return min(floor(room * window / count), window)
end

local function sliding(window, limit, cost, f)
  local start = now - now % window
  local current, previous = 0, 0
  if #f == 3 and f[1] == start then
    current, previous = f[2], f[3]
  elseif #f == 3 and f[1] + window == start then
    previous = f[2]
  end
  local elapsed = now - start
  local capacity = limit * window
  local function estimate(c)
    return previous * (window - elapsed) + c * window
  end
  local function remaining(c)
    return floor(max(capacity - estimate(c), 0) / window)
  end
  local function reset(c)
    if c == 0 and previous == 0 then return 0 end
    if c == 0 then return start + window - now end
    return start + 2 * window - now
  end
  local unconsumed = state(true, remaining(current), 0, reset(current))
  if estimate(current + cost) <= capacity then
    local after = current + cost
    return state(true, remaining(after), 0, reset(after)), unconsumed,
      string.format('%.0f:%.0f:%.0f', start, after, previous), start + 2 * window - now
  end
  local retry_at
  if current + cost <= limit then
    retry_at = start + window - room_share(limit - current - cost, previous, window)
  else
    retry_at = start + 2 * window - room_share(limit - cost, current, window)
  end
  local denied = state(false, remaining(current), max(retry_at - now, 1), reset(current))
  return denied, denied, nil, 0
end

local algorithms = {gcra = gcra, fixed = fixed, sliding = sliding}
local n = #KEYS - 1
local verdicts = {}
local all_allowed = true
local replayed = false
for i = 1, n do
  local a = 1 + (i - 1) * 7
  local period, capacity, cost = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local stored = redis.call('HMGET', KEYS[i], 'v', 'r')
  local f = fields(stored[1])
  local charge = cost > 0 and ARGV[a + 6] == '1'
  replayed = replayed or (charge and stored[2] == ARGV[a + 7])
  local applied, unconsumed, value, ttl = algorithms[ARGV[a + 2]](period, capacity, cost, f)
  verdicts[i] = {applied = applied, unconsumed = unconsumed, value = value, ttl = ttl, charge = charge,
    f = f, algorithm = ARGV[a + 2], period = period, capacity = capacity}
  all_allowed = all_allowed and applied[1] == 1
end
local states = {}
if replayed then
  for i, v in ipairs(verdicts) do
    states[i] = algorithms[v.algorithm](v.period, v.capacity, 0, v.f)
  end
  return {1, states}
end
for i, v in ipairs(verdicts) do
  if all_allowed then
    if v.charge then
      local a = 1 + (i - 1) * 7
      redis.call('HSET', KEYS[i], 'v', v.value, 'r', ARGV[a + 7])
      redis.call('PEXPIRE', KEYS[i], floor(v.ttl / 1000) + 1)
      index_add(KEYS[#KEYS], ARGV[1], ARGV[a + 1])
    end
    states[i] = v.applied
  else
    states[i] = v.unconsumed
  end
end
return {all_allowed and 1 or 0, states}
