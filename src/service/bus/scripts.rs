//! The bus's Lua scripts: the queries Redis runs atomically over the
//! shared state (presence, room counts, nicks; see `bus/mod.rs`). Every
//! key is built from ARGV[1], the prefix.

/// `/who ROOM`: the live origins in the room, their member count, and up
/// to ARGV[3] of their nicks (sorted); dead origins are cleaned out.
pub(super) const WHO_SCRIPT: &str = r"
local p, room, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local where = p .. ':where:' .. room
local names, total = {}, 0
for _, o in ipairs(redis.call('SMEMBERS', where)) do
  local who = p .. ':who:' .. room .. ':' .. o
  if redis.call('EXISTS', p .. ':node:' .. o) == 1 then
    total = total + redis.call('SCARD', who)
    if #names < max then
      for _, n in ipairs(redis.call('SRANDMEMBER', who, max - #names)) do
        names[#names + 1] = n
      end
    end
  else
    redis.call('SREM', where, o)
    redis.call('DEL', who)
  end
end
table.sort(names)
return {total, names}
";

/// What an origin leaves in Redis, removed (a Lua function the scripts
/// below share).
macro_rules! forget_fn {
    () => {
        r"
local function forget(p, o)
  local rooms = p .. ':rooms:' .. o
  for _, room in ipairs(redis.call('HKEYS', rooms)) do
    redis.call('SREM', p .. ':where:' .. room, o)
    redis.call('DEL', p .. ':who:' .. room .. ':' .. o)
  end
  redis.call('DEL', rooms)
  local nicks = p .. ':nicks:' .. o
  for _, n in ipairs(redis.call('SMEMBERS', nicks)) do
    if redis.call('GET', p .. ':nick:' .. n) == o then
      redis.call('DEL', p .. ':nick:' .. n)
    end
  end
  redis.call('DEL', nicks)
end
"
    };
}

/// `/rooms`: every room with members at a live origin, summed over the
/// origins, sorted, the first ARGV[2] of them (the lobby always); dead
/// origins are forgotten.
pub(super) const ROOMS_SCRIPT: &str = concat!(
    forget_fn!(),
    r"
local p, max = ARGV[1], tonumber(ARGV[2])
local counts = {lobby = 0}
for _, o in ipairs(redis.call('SMEMBERS', p .. ':nodes')) do
  if redis.call('EXISTS', p .. ':node:' .. o) == 1 then
    local kv = redis.call('HGETALL', p .. ':rooms:' .. o)
    for i = 1, #kv, 2 do
      counts[kv[i]] = (counts[kv[i]] or 0) + tonumber(kv[i + 1])
    end
  else
    forget(p, o)
    redis.call('SREM', p .. ':nodes', o)
  end
end
local names = {}
for name, n in pairs(counts) do
  if n > 0 or name == 'lobby' then names[#names + 1] = name end
end
table.sort(names)
local out = {#names}
for i = 1, math.min(#names, max) do
  out[#out + 1] = names[i]
  out[#out + 1] = counts[names[i]]
end
return out
"
);

/// Origin ARGV[2] forgets all it had registered (a fresh start, or a
/// goodbye), and ARGV[3] (1) says whether to hold its lease on for
/// ARGV[4] seconds or (0) to give it up.
pub(super) const WIPE_SCRIPT: &str = concat!(
    forget_fn!(),
    r"
local p, o = ARGV[1], ARGV[2]
forget(p, o)
if ARGV[3] == '1' then
  redis.call('SET', p .. ':node:' .. o, '1', 'EX', ARGV[4])
  redis.call('SADD', p .. ':nodes', o)
else
  redis.call('DEL', p .. ':node:' .. o)
  redis.call('SREM', p .. ':nodes', o)
end
return 1
"
);

/// Origin ARGV[3] takes nick ARGV[2] unless a live origin holds it: 1 if
/// taken, 0 if not.
pub(super) const CLAIM_SCRIPT: &str = r"
local p, nick, o = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':nick:' .. nick
local holder = redis.call('GET', key)
if holder and holder ~= o and redis.call('EXISTS', p .. ':node:' .. holder) == 1 then
  return 0
end
redis.call('SET', key, o)
redis.call('SADD', p .. ':nicks:' .. o, nick)
return 1
";

/// Origin ARGV[3] lets nick ARGV[2] go, if it holds it.
pub(super) const RELEASE_SCRIPT: &str = r"
local p, nick, o = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', p .. ':nick:' .. nick) == o then
  redis.call('DEL', p .. ':nick:' .. nick)
end
redis.call('SREM', p .. ':nicks:' .. o, nick)
return 1
";
