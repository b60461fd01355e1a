-- Apply one batch of counter deltas atomically.
-- KEYS: every key the batch touches. ARGV[1]: JSON {"m": marker key index (0 = none),
-- "mt": marker ttl, "ops": [[kind, key index, ttl, data], ...]}.
-- Returns -1 when the marker was already set (the batch was applied before), else the
-- number of operations applied; an error starting with LCBAD when the batch is invalid.
--
-- A script is not rolled back when it fails half way, so every check comes before the
-- first write, and the marker is that first write: Redis refuses a script's first write
-- when it is out of memory or a replica, and lets the rest through once one was made.
local ok, batch = pcall(cjson.decode, ARGV[1])
local function invalid(why)
  return redis.error_reply('LCBAD invalid batch: ' .. why)
end
if not ok or type(batch) ~= 'table' or type(batch.ops) ~= 'table' then
  return invalid('not a batch object')
end

-- Counts come as Lua numbers (doubles): integers up to 2^53 only, or Redis would read
-- 1e+17 (a number written with %.17g) and refuse it half way through the batch.
local type, next = type, next
local LIMIT = 9007199254740992
local function count(n)
  return type(n) == 'number' and n >= 0 and n <= LIMIT and n % 1 == 0
end
-- A total past 2^53 (a day's bytes) comes as a string of at most 18 digits, which
-- HINCRBY takes exactly (below 2^63).
local function big_count(n)
  return type(n) == 'string' and #n <= 18 and string.match(n, '^[0-9]+$') ~= nil
end
local function key_index(i)
  return count(i) and i >= 1 and i <= #KEYS
end
-- A list of strings (a JSON object would leave holes for unpack to fill with nil).
-- cjson makes a JSON array a table of keys 1..n without holes (null is cjson.null, not
-- nil) and an object a table of string keys, of length 0: reading 1..#t checks it all.
local function strings(t)
  if type(t) ~= 'table' then return false end
  local n = #t
  if n == 0 then return next(t) == nil end
  for i = 1, n do
    if type(t[i]) ~= 'string' then return false end
  end
  return true
end
local function counts(t, n)
  if type(t) ~= 'table' or #t ~= n then return false end
  for i = 1, n do
    local v = t[i]
    if type(v) ~= 'number' or v < 0 or v > LIMIT or v % 1 ~= 0 then return false end
  end
  return true
end

local function check(op)
  if type(op) ~= 'table' then return 'an operation is not a list' end
  local kind, key, ttl, data = op[1], op[2], op[3], op[4]
  if not key_index(key) then return 'bad key index' end
  if not count(ttl) then return 'bad ttl' end
  if kind == 'h' then
    if type(data) ~= 'table' then return 'bad counters' end
    for field, n in pairs(data) do
      if type(field) ~= 'string' or not (count(n) or big_count(n)) then
        return 'counter ' .. tostring(field) .. ' is not an integer in [0, 2^53]'
      end
    end
  elseif kind == 'z' then
    if type(data) ~= 'table' or not count(data[1]) or not strings(data[2]) then
      return 'bad members'
    end
    if not counts(data[3], #data[2]) then return 'member hits are not integers in [0, 2^53]' end
    -- then pairs of a sorted set and its sums per member (bytes, durations)
    if #data > 9 then return 'too many sums' end
    for j = 4, #data, 2 do
      if not key_index(data[j]) or not counts(data[j + 1], #data[2]) then
        return 'member sums are not integers in [0, 2^53]'
      end
    end
  elseif kind == 'p' then
    -- the visitor hashes; op[5], when there: (key, ttl) of each more bucket that gets
    -- the same hashes (a site's hour and day, when a batch is in one hour)
    if not strings(data) then return 'bad visitors' end
    local more = op[5]
    if more ~= nil then
      if type(more) ~= 'table' or #more % 2 ~= 0 then return 'bad visitors' end
      for j = 1, #more, 2 do
        if not key_index(more[j]) or not count(more[j + 1]) then return 'bad visitors' end
      end
    end
  elseif kind == 'q' then
    -- a section's visitors: the most sections of its bucket, the set of those kept, the
    -- section's name, the visitor hashes; then (key, kept set, ttl) of each more bucket
    -- of the section that gets the same visitors (its day's, when a batch is in one hour)
    if type(data) ~= 'table' or not count(data[1]) or not key_index(data[2])
        or type(data[3]) ~= 'string' or not strings(data[4]) or (#data - 4) % 3 ~= 0 then
      return 'bad section visitors'
    end
    for j = 5, #data, 3 do
      if not key_index(data[j]) or not key_index(data[j + 1]) or not count(data[j + 2]) then
        return 'bad section visitors'
      end
    end
  elseif kind == 'e' then
    -- an event's bitmap: the numbering's keys, its ttl, then the visitor hashes
    if type(data) ~= 'table' or not key_index(data[1]) or not key_index(data[2])
        or not count(data[3]) or not count(data[4]) or not strings(data[5]) then
      return 'bad event set'
    end
    for _, h in ipairs(data[5]) do
      if not string.match(h, '^[0-9a-f]+$') or #h ~= 16 then return 'bad visitor hash' end
    end
  elseif kind == 'l' then
    if type(data) ~= 'table' or not count(data[1]) or data[1] < 1 or not strings(data[2]) then
      return 'bad list'
    end
  elseif kind == 's' then
    if type(data) ~= 'string' then return 'bad value' end
  elseif kind == 'a' then
    if not strings(data) or #data == 0 then return 'bad set' end
  else
    return 'unknown operation ' .. tostring(kind)
  end
  return nil
end

if type(batch.m) ~= 'number' or (batch.m ~= 0 and not (key_index(batch.m) and count(batch.mt)
    and batch.mt >= 1)) then
  return invalid('bad marker')
end
for i, op in ipairs(batch.ops) do
  local why = check(op)
  if why then return invalid('operation ' .. i .. ': ' .. why) end
end

if batch.m > 0 then
  if not redis.call('SET', KEYS[batch.m], '1', 'NX', 'EX', batch.mt) then
    return -1
  end
end
local other = '(other)'
-- A member's count goes to Redis as its digits (format('%d', n)): Redis writes a Lua
-- number with %.17g, which was some 7 % of this script's instructions on a diverse day.
local format = string.format
local numbers = {}  -- numbering key -> visitor hash -> number, for the 'e' operations

-- Redis 6 makes a new sorted set a ziplist, where each member added is looked for and
-- placed by a scan of those before it, until the 129th (zset-max-ziplist-entries) turns
-- it into a skiplist: a minute's paths took 128^2/2 steps before their first skiplist
-- insert, a fifth of this script's instructions on a diverse day. A set whose first
-- member is longer than 64 bytes (zset-max-ziplist-value) starts as a skiplist: a new set
-- of more than 128 members starts with this placeholder, removed at once, so that no one
-- sees it (the script is atomic). Redis 7 sizes a new set from the ZADD itself.
local PLACEHOLDER = '(logcount: a placeholder that makes this new sorted set a skiplist)'

-- Members with a positive score, added to a sorted set that does not hold them yet.
local function zadd_all(key, names, scores)
  local args, n, placed = {}, 0, false
  for i = 1, #names do
    local score = scores[i]
    if score > 0 then
      args[n + 1], args[n + 2] = format('%d', score), names[i]
      n = n + 2
      if names[i] == PLACEHOLDER then placed = true end  -- never removed then
    end
  end
  if n > 256 and not placed then
    redis.call('ZADD', key, 0, PLACEHOLDER, unpack(args, 1, math.min(1998, n)))
    for i = 1999, n, 2000 do
      redis.call('ZADD', key, unpack(args, i, math.min(i + 1999, n)))
    end
    redis.call('ZREM', key, PLACEHOLDER)
    return
  end
  for i = 1, n, 2000 do
    redis.call('ZADD', key, unpack(args, i, math.min(i + 1999, n)))
  end
end

local function add_visitors(key, hashes)
  for i = 1, #hashes, 1000 do
    redis.call('PFADD', key, unpack(hashes, i, math.min(i + 999, #hashes)))
  end
end

-- A bucket keeps the visitors of its first `most` sections: a flood of made-up paths
-- cannot make a HyperLogLog each. A section past them keeps none there.
local function add_section(key, ttl, kept, most, name, hashes)
  if redis.call('SISMEMBER', kept, name) == 1 or redis.call('SCARD', kept) < most then
    redis.call('SADD', kept, name)
    redis.call('EXPIRE', kept, ttl)
    add_visitors(key, hashes)
  end
end

local function zincr_each(key, names, scores)
  for i = 1, #names do
    local score = scores[i]
    if score > 0 then redis.call('ZINCRBY', key, format('%d', score), names[i]) end
  end
end

for _, op in ipairs(batch.ops) do
  local kind, key, ttl, data = op[1], KEYS[op[2]], op[3], op[4]
  if kind == 'h' then
    for field, n in pairs(data) do
      redis.call('HINCRBY', key, field, n)
    end
  elseif kind == 'z' then
    -- Cardinality guard: at most data[1] members, the rest folded into (other), their
    -- sums too. data: limit, members, their hits, then pairs of a key (the bytes, the
    -- durations) and the members' sums.
    local limit, names, incs = data[1], data[2], data[3]
    local sides = {}
    for j = 4, #data, 2 do
      sides[#sides + 1] = {KEYS[data[j]], data[j + 1]}
    end
    local card = redis.call('ZCARD', key)
    if card == 0 and #names <= limit then
      -- A new bucket (most minute buckets): every member in a few ZADDs, not one
      -- call each.
      zadd_all(key, names, incs)
      for _, side in ipairs(sides) do
        if redis.call('ZCARD', side[1]) == 0 then
          zadd_all(side[1], names, side[2])
        else
          zincr_each(side[1], names, side[2])
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
        redis.call('ZINCRBY', key, format('%d', incs[i]), target)
        for _, side in ipairs(sides) do
          local n = side[2][i]
          if n > 0 then redis.call('ZINCRBY', side[1], format('%d', n), target) end
        end
      end
    end
    for _, side in ipairs(sides) do redis.call('EXPIRE', side[1], ttl) end
  elseif kind == 'p' then
    add_visitors(key, data)
    local more = op[5] or {}
    for j = 1, #more, 2 do
      add_visitors(KEYS[more[j]], data)
      redis.call('EXPIRE', KEYS[more[j]], more[j + 1])
    end
  elseif kind == 'q' then
    local most, name, hashes = data[1], data[3], data[4]
    add_section(key, ttl, KEYS[data[2]], most, name, hashes)
    for j = 5, #data, 3 do
      local more, more_ttl = KEYS[data[j]], data[j + 2]
      add_section(more, more_ttl, KEYS[data[j + 1]], most, name, hashes)
      redis.call('EXPIRE', more, more_ttl)
    end
  elseif kind == 'e' then
    -- Each visitor hash gets a number once (the next free one), kept both ways: the
    -- hash -> number map, and the hashes in number order (16 bytes each); the event's
    -- bucket is a bitmap of numbers.
    -- A visitor in several events and buckets of the batch is looked up once. Past
    -- data[4] numbered visitors a new one is not numbered (nor counted in the event):
    -- a flood of made-up visitors cannot fill Redis.
    local ids, hashes, most = KEYS[data[1]], KEYS[data[2]], data[4]
    local known = numbers[ids]
    if not known then
      known = {}
      numbers[ids] = known
    end
    for _, h in ipairs(data[5]) do
      local id = known[h]
      if not id then
        id = redis.call('HGET', ids, h)
        if not id and tonumber(redis.call('HGET', ids, '#next') or 0) < most then
          id = redis.call('HINCRBY', ids, '#next', 1) - 1
          redis.call('HSET', ids, h, id)
          redis.call('SETRANGE', hashes, id * 16, h)
        end
        id = id and tonumber(id) or false
        known[h] = id
      end
      if id then redis.call('SETBIT', key, id, 1) end
    end
    redis.call('EXPIRE', ids, data[3])
    redis.call('EXPIRE', hashes, data[3])
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
