-- Apply one batch of counter deltas atomically.
-- KEYS: every key the batch touches. ARGV[1]: JSON {"m": marker key index (0 = none),
-- "mt": marker ttl, "ops": [[kind, key index, ttl, data], ...]}.
-- Returns -1 when the marker was already set (the batch was applied before), else the
-- number of operations applied.
local batch = cjson.decode(ARGV[1])
if batch.m and batch.m > 0 then
  if not redis.call('SET', KEYS[batch.m], '1', 'NX', 'EX', batch.mt) then
    return -1
  end
end
local other = '(other)'

-- Members with a positive score, added to a sorted set that does not hold them yet.
local function zadd_all(key, names, scores)
  local args, n = {}, 0
  for i = 1, #names do
    local score = scores[i]
    if score > 0 then
      args[n + 1], args[n + 2] = score, names[i]
      n = n + 2
    end
  end
  for i = 1, n, 2000 do
    redis.call('ZADD', key, unpack(args, i, math.min(i + 1999, n)))
  end
end

local function zincr_each(key, names, scores)
  for i = 1, #names do
    local score = scores[i]
    if score > 0 then redis.call('ZINCRBY', key, score, names[i]) end
  end
end

for _, op in ipairs(batch.ops) do
  local kind, key, ttl, data = op[1], KEYS[op[2]], op[3], op[4]
  if kind == 'h' then
    for field, n in pairs(data) do
      redis.call('HINCRBY', key, field, n)
    end
  elseif kind == 'z' then
    -- Cardinality guard: at most data[1] members, the rest folded into (other).
    -- data: limit, members, their hits, then (optional) the bytes key and their bytes.
    local limit, names, incs, bkey, bytes = data[1], data[2], data[3], data[4], data[5]
    if bkey then bkey = KEYS[bkey] end
    local card = redis.call('ZCARD', key)
    if card == 0 and #names <= limit then
      -- A new bucket (most minute buckets): every member in a few ZADDs, not one
      -- call each.
      zadd_all(key, names, incs)
      if bkey then
        if redis.call('ZCARD', bkey) == 0 then
          zadd_all(bkey, names, bytes)
        else
          zincr_each(bkey, names, bytes)
        end
      end
    else
      local real = card - (redis.call('ZSCORE', key, other) and 1 or 0)
      -- When every member could be new and still fit, no member needs looking up.
      local fits = real + #names <= limit
      for i, member in ipairs(names) do
        local target = member
        if not fits and member ~= other and not redis.call('ZSCORE', key, member) then
          if real >= limit then
            target = other
          else
            real = real + 1
          end
        end
        redis.call('ZINCRBY', key, incs[i], target)
        if bkey and bytes[i] > 0 then redis.call('ZINCRBY', bkey, bytes[i], target) end
      end
    end
    if bkey then redis.call('EXPIRE', bkey, ttl) end
  elseif kind == 'p' then
    for i = 1, #data, 1000 do
      redis.call('PFADD', key, unpack(data, i, math.min(i + 999, #data)))
    end
  elseif kind == 'l' then
    local cap, items = data[1], data[2]
    for i = 1, #items, 1000 do
      redis.call('LPUSH', key, unpack(items, i, math.min(i + 999, #items)))
    end
    redis.call('LTRIM', key, 0, cap - 1)
  elseif kind == 's' then
    redis.call('SET', key, data)
  elseif kind == 'a' then
    redis.call('SADD', key, unpack(data))
  end
  if ttl > 0 and kind ~= 's' and kind ~= 'a' then
    redis.call('EXPIRE', key, ttl)
  end
end
return #batch.ops
