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
for _, op in ipairs(batch.ops) do
  local kind, key, ttl, data = op[1], KEYS[op[2]], op[3], op[4]
  if kind == 'h' then
    for field, n in pairs(data) do
      redis.call('HINCRBY', key, field, n)
    end
  elseif kind == 'z' then
    -- Cardinality guard: at most data[1] members, the rest folded into (other).
    local limit, incs, bkey, bytes = data[1], data[2], data[3], data[4]
    if bkey ~= 0 then bkey = KEYS[bkey] else bkey = nil end
    local has_other = redis.call('ZSCORE', key, other) and 1 or 0
    local real = redis.call('ZCARD', key) - has_other
    -- When every member could be new and still fit, no member needs looking up.
    local count = 0
    for _ in pairs(incs) do count = count + 1 end
    local fits = real + count <= limit
    for member, n in pairs(incs) do
      local target = member
      if not fits and member ~= other and not redis.call('ZSCORE', key, member) then
        if real >= limit then
          target = other
        else
          real = real + 1
        end
      end
      redis.call('ZINCRBY', key, n, target)
      if bkey then
        local b = bytes[member]
        if b and b > 0 then redis.call('ZINCRBY', bkey, b, target) end
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
