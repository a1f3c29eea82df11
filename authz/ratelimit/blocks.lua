-- Brute-force blocks shared by every replica (see authz/ratelimit/blockredis.py).
-- KEYS[1]: the sorted set of blocks (member: block key, score: when the block ends, Unix ms).
-- ARGV[1]: the operation (fail | list | clear), ARGV[2]: now (ms).
-- Every key carries the hash tag {authz-bf}, so one script call is legal in Redis Cluster.
local blocks = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', blocks, '-inf', now)

if op == 'list' then
  -- ARGV[3]: at most this many, soonest end first.
  return redis.call('ZRANGE', blocks, 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
end

if op == 'clear' then
  -- ARGV[3..]: block keys to lift; KEYS[2..]: their failure counters.
  local lifted = 0
  for i = 3, #ARGV do
    lifted = lifted + redis.call('ZREM', blocks, ARGV[i])
  end
  for i = 2, #KEYS do
    redis.call('DEL', KEYS[i])
  end
  return lifted
end

-- fail: KEYS[2..]: failure counters (sorted sets of failure times); ARGV[3]: blocks kept at
-- most; ARGV[4]: a nonce unique to this call; then per counter: block key, max failures,
-- window (ms), block length (ms). Answer per counter: started (1/0), block end (0: none), count.
local out = {}
local most = tonumber(ARGV[3])
for i = 2, #KEYS do
  local at = 5 + (i - 2) * 4
  local member = ARGV[at]
  local ends = redis.call('ZSCORE', blocks, member)
  if ends then
    out[#out + 1] = 0
    out[#out + 1] = tonumber(ends)
    out[#out + 1] = 0
  else
    local counter = KEYS[i]
    local max_failures = tonumber(ARGV[at + 1])
    local window = tonumber(ARGV[at + 2])
    redis.call('ZREMRANGEBYSCORE', counter, '-inf', now - window)
    redis.call('ZADD', counter, now, ARGV[4] .. ':' .. i)
    local count = redis.call('ZCARD', counter)
    if count >= max_failures then
      local untl = now + tonumber(ARGV[at + 3])
      redis.call('DEL', counter)
      redis.call('ZADD', blocks, untl, member)
      out[#out + 1] = 1
      out[#out + 1] = untl
      out[#out + 1] = count
    else
      redis.call('PEXPIRE', counter, window)
      out[#out + 1] = 0
      out[#out + 1] = 0
      out[#out + 1] = count
    end
  end
end
local extra = redis.call('ZCARD', blocks) - most
if extra > 0 then
  redis.call('ZPOPMIN', blocks, extra)
end
local last = redis.call('ZRANGE', blocks, -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', blocks, math.floor(tonumber(last[2])))
end
return out
