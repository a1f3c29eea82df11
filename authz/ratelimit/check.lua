-- Rate limits of one check, atomically: evaluate every limit, then (only if all admit the request
-- and ARGV[2] == "1") count it in every bucket. The arithmetic mirrors authz/ratelimit/algorithms.py
-- exactly (integer milliseconds; the token bucket in doubles, stored with %.17g).
--
-- KEYS[i]      bucket of limit i (all keys of one call share a hash tag: one cluster slot)
-- ARGV[1]      now, ms since the Unix epoch (the sidecar's clock)
-- ARGV[2]      "1" to count, "0" to peek
-- ARGV[3i..]   per limit i: algorithm ("sw" | "fw" | "tb"), requests, window in ms
-- returns      per limit i: allowed (1/0), remaining, reset ms, retry ms (a flat array)
local K = 10
-- Numbers reach redis.call as text; never let a large one become "1.7e+10".
local function int(x) return string.format("%d", x) end
local now = tonumber(ARGV[1])
local consume = ARGV[2] == "1"
local all = true
local out = {}
local plan = {}

for i = 1, #KEYS do
  local key = KEYS[i]
  local alg = ARGV[3 * i]
  local limit = tonumber(ARGV[3 * i + 1])
  local window = tonumber(ARGV[3 * i + 2])
  local ok, remaining, reset, retry
  if alg == "sw" then
    local slot = window / K
    local current = math.floor(now / slot)
    local oldest = current - K
    local flat = redis.call("HGETALL", key)
    local used, live, counts, stale = 0, {}, {}, {}
    for j = 1, #flat, 2 do
      local index, count = tonumber(flat[j]), tonumber(flat[j + 1])
      if index >= oldest then
        used = used + count
        live[#live + 1] = index
        counts[index] = count
      else
        stale[#stale + 1] = flat[j]
      end
    end
    if used < limit then
      ok, remaining, reset, retry = 1, limit - used - 1, (current + K + 1) * slot - now, 0
    else
      table.sort(live)
      local need, freed = used + 1 - limit, 0
      retry = 0
      for _, index in ipairs(live) do
        freed = freed + counts[index]
        if freed >= need then
          retry = (index + K + 1) * slot - now
          break
        end
      end
      ok, remaining, reset = 0, 0, (live[#live] + K + 1) * slot - now
    end
    plan[i] = {alg, key, current, stale, (current + K + 1) * slot - now}
  elseif alg == "fw" then
    local index = math.floor(now / window)
    local stored = redis.call("HMGET", key, "w", "c")
    local count = 0
    if tonumber(stored[1]) == index then count = tonumber(stored[2]) end
    reset = (index + 1) * window - now
    if count < limit then
      ok, remaining, retry = 1, limit - count - 1, 0
    else
      ok, remaining, retry = 0, 0, reset
    end
    plan[i] = {alg, key, index, count + 1, reset}
  else
    local interval = window / limit
    local tat = tonumber(redis.call("GET", key) or "") or now
    if tat < now then tat = now end
    local new_tat = tat + interval
    if new_tat - now <= window then
      ok, remaining = 1, math.floor((window - (new_tat - now)) / interval + 1e-9)
      reset, retry = math.ceil(new_tat - now), 0
    else
      ok, remaining = 0, 0
      reset, retry = math.ceil(tat - now), math.ceil(new_tat - window - now)
    end
    plan[i] = {alg, key, new_tat}
  end
  if ok == 0 then all = false end
  out[#out + 1] = ok
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end

if all and consume then
  for i = 1, #KEYS do
    local p = plan[i]
    if p[1] == "sw" then
      redis.call("HINCRBY", p[2], int(p[3]), 1)
      if #p[4] > 0 then redis.call("HDEL", p[2], unpack(p[4])) end
      redis.call("PEXPIRE", p[2], int(p[5]))
    elseif p[1] == "fw" then
      redis.call("HSET", p[2], "w", int(p[3]), "c", int(p[4]))
      redis.call("PEXPIRE", p[2], int(p[5]))
    else
      redis.call("SET", p[2], string.format("%.17g", p[3]), "PX", int(math.max(1, math.ceil(p[3] - now))))
    end
  end
end
return out
