-- All-or-nothing rate decision over several buckets on the server's clock.
-- Mirrors src/store/rate.rs line for line. KEYS: one data key per bucket,
-- then the index. ARGV: data prefix, then per bucket 7 values: name,
-- algorithm (gcra|fixed|sliding), period µs (GCRA interval or window),
-- capacity (burst or limit), cost, mode (c charge, p peek, r refund),
-- new version.
-- Returns {allowed, {allowed, remaining, retry_after µs, reset_after µs}...}.
-- Safe to replay: a retry of a decision that was already charged (or
-- refunded) finds its version in a bucket and answers "allowed" with the
-- state as it now is, changing nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor, max, min, match, format = math.floor, math.max, math.min, string.match, string.format

-- A stored state's fields: as many non-negative integers as the algorithm
-- keeps (gcra 1, fixed 2, sliding 3), else none (decided as no state).
local shapes = {gcra = '^(%d+)$', fixed = '^(%d+):(%d+)$', sliding = '^(%d+):(%d+):(%d+)$'}
local function fields(stored, algorithm)
  if not stored then
    return {}
  end
  local a, b, c = match(stored, shapes[algorithm])
  if not a then
    return {}
  end
  return {tonumber(a), tonumber(b), tonumber(c)}
end

local function gcra(interval, burst, cost, f)
  interval = max(interval, 1)
  local tolerance = interval * burst
  local tat = now
  if f[1] and f[1] > now then
    tat = f[1]
  end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - tolerance
  local waited = tat - now
  local unconsumed = {1, floor(max(tolerance - waited, 0) / interval), 0, waited}
  if now >= allow_at then
    local used = new_tat - now
    return {1, floor(max(tolerance - used, 0) / interval), 0, used}, unconsumed,
      format('%.0f', new_tat), used
  end
  local denied = {0, unconsumed[2], allow_at - now, waited}
  return denied, denied, nil, 0
end

local function fixed(window, limit, cost, f)
  local start = now - now % window
  local finish = start + window
  local count = 0
  if f[1] == start then
    count = f[2]
  end
  local reset = 0
  if count > 0 then reset = finish - now end
  local unconsumed = {1, max(limit - count, 0), 0, reset}
  if count + cost <= limit then
    local after = count + cost
    local after_reset = 0
    if after > 0 then after_reset = finish - now end
    return {1, limit - after, 0, after_reset}, unconsumed,
      format('%.0f:%.0f', start, after), finish - now
  end
  local denied = {0, unconsumed[2], finish - now, reset}
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
  if f[1] == start then
    current, previous = f[2], f[3]
  elseif f[1] and f[1] + window == start then
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
  local unconsumed = {1, remaining(current), 0, reset(current)}
  if estimate(current + cost) <= capacity then
    local after = current + cost
    return {1, remaining(after), 0, reset(after)}, unconsumed,
      format('%.0f:%.0f:%.0f', start, after, previous), start + 2 * window - now
  end
  local retry_at
  if current + cost <= limit then
    retry_at = start + window - room_share(limit - current - cost, previous, window)
  else
    retry_at = start + 2 * window - room_share(limit - cost, current, window)
  end
  local denied = {0, unconsumed[2], max(retry_at - now, 1), unconsumed[4]}
  return denied, denied, nil, 0
end

local algorithms = {gcra = gcra, fixed = fixed, sliding = sliding}

-- A refund: the state with cost units taken off (nil when nothing spent is
-- still counted), decided at no cost so it reports what is left.
local function give_back(algorithm, period, cost, f)
  if not f[1] then
    return nil
  end
  if algorithm == 'gcra' then
    if f[1] <= now then
      return nil
    end
    local tat = max(f[1] - max(period, 1) * cost, now)
    return {tat}, format('%.0f', tat)
  end
  local start = now - now % period
  if f[2] > 0 and (f[1] == start or (algorithm == 'sliding' and f[1] + period == start)) then
    local back = {f[1], max(f[2] - cost, 0), f[3]}
    if algorithm == 'fixed' then
      return back, format('%.0f:%.0f', back[1], back[2])
    end
    return back, format('%.0f:%.0f:%.0f', back[1], back[2], back[3])
  end
  return nil
end

local function refund(algorithm, period, capacity, cost, f)
  local back, value = give_back(algorithm, period, cost, f)
  local state = algorithms[algorithm](period, capacity, 0, back or f)
  state[1], state[3] = 1, 0
  return state, state, value, nil
end
local n = #KEYS - 1
-- Per bucket: applied state, unconsumed state, new value, ttl µs, charge,
-- existed, fields, algorithm, period, capacity (positional: no hashing).
local verdicts = {}
local all_allowed = true
local replayed = false
for i = 1, n do
  local a = 1 + (i - 1) * 7
  local algorithm = ARGV[a + 2]
  local period, capacity, cost = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local stored = redis.call('HMGET', KEYS[i], 'v', 'r')
  local f = fields(stored[1], algorithm)
  local mode = ARGV[a + 6]
  local charge = cost > 0 and mode ~= 'p'
  replayed = replayed or (charge and stored[2] == ARGV[a + 7])
  local applied, unconsumed, value, ttl
  if mode == 'r' then
    applied, unconsumed, value, ttl = refund(algorithm, period, capacity, cost, f)
  else
    applied, unconsumed, value, ttl = algorithms[algorithm](period, capacity, cost, f)
  end
  verdicts[i] = {applied, unconsumed, value, ttl, charge, stored[1] ~= false, f, algorithm, period, capacity}
  all_allowed = all_allowed and applied[1] == 1
end
local states = {}
if replayed then
  for i, v in ipairs(verdicts) do
    states[i] = algorithms[v[8]](v[9], v[10], 0, v[7])
  end
  return {1, states}
end
for i, v in ipairs(verdicts) do
  if all_allowed then
    -- A refund keeps the bucket's expiry (it only shortens what is needed).
    if v[5] and v[3] then
      local a = 1 + (i - 1) * 7
      redis.call('HSET', KEYS[i], 'v', v[3], 'r', ARGV[a + 7])
      if v[4] then
        redis.call('PEXPIRE', KEYS[i], floor(v[4] / 1000) + 1)
      end
      -- A key that existed is indexed already (the index only drops dead names).
      if not v[6] then
        index_add(KEYS[#KEYS], ARGV[1], ARGV[a + 1])
      end
    end
    states[i] = v[1]
  else
    states[i] = v[2]
  end
end
return {all_allowed and 1 or 0, states}
