//! The Redis store: one Lua script per check (EVALSHA through `redis::Script`, which loads the
//! script again after a Redis restart), so a check is one round trip and atomic across every
//! `ampflow` process sharing the Redis. The script is `window.rs` in Lua: the same counters
//! (a hash per key: `w` window index, `c` current count, `p` previous count), the same integer
//! arithmetic, and Redis's own clock (`TIME`), so processes with skewed clocks still agree.
//!
//! A rule may ask for a lease (`want` > 1): when it admits, the script counts up to `want`
//! requests at once instead of one, so the process can admit the rest locally (see
//! `lease.rs`). The grant shrinks with the room left: `max(1, ⌊room × want / limit⌋)`, so near
//! the limit every process holds at most a unit or two that its clients may not use.

use redis::aio::ConnectionManager;

use super::{Check, Verdict};

/// KEYS: block key, block-count key, then one key per rule.
/// ARGV: auto-block on (0/1), blocks_max, block window ms, block duration ms, then per rule:
/// limit, window ms, fixed (0/1), want (units to lease, at least 1).
/// Returns {status, rule index (1-based, 0 for none), limit, remaining, reset ms, retry ms,
/// Redis's now ms}, and when admitted, per rule {granted units, remaining after the grant};
/// status 0 admitted, 1 limited, 2 blocked.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local auto_block = ARGV[1] == '1'
if auto_block then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then return {2, 0, 0, 0, now + ttl, ttl, now} end
end

local function roll(key, window)
  local h = redis.call('HMGET', key, 'w', 'c', 'p')
  local index = math.floor(now / window)
  local w, c = tonumber(h[1]), tonumber(h[2]) or 0
  if w == index then return index, c, tonumber(h[3]) or 0 end
  if w == index - 1 then return index, 0, c end
  return index, 0, 0
end

local function retry_after(previous, current, limit, window, elapsed, fixed)
  if fixed then return window - elapsed + 1 end
  if current < limit and previous > 0 then
    local room = limit - 1 - current
    local t = window - math.min(math.floor(room * window / previous), window)
    if t > elapsed and t < window then return t - elapsed + 1 end
  end
  local t = 0
  if current > 0 then
    t = window - math.min(math.floor((limit - 1) * window / current), window)
  end
  return window - elapsed + t + 1
end

local rules = #KEYS - 2
local state = {}
local best, best_remaining = 0, -1
local worst, worst_retry = 0, -1
for i = 1, rules do
  local base = 4 + (i - 1) * 4
  local limit, window = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local fixed = ARGV[base + 3] == '1'
  local want = tonumber(ARGV[base + 4])
  local index, c, p = roll(KEYS[i + 2], window)
  local elapsed = now - index * window
  local previous = p
  if fixed then previous = 0 end
  local used = math.ceil(previous * (window - elapsed) / window) + c
  local reset = (index + 1) * window
  local room = limit - used
  local grant = 1
  if want > 1 and room > 1 then
    grant = math.max(1, math.min(want, room, math.floor(room / limit * want)))
  end
  state[i] = {index, c, p, window, limit, reset, grant, room - grant}
  if used < limit then
    local remaining = limit - used - 1
    if best_remaining < 0 or remaining < best_remaining then
      best, best_remaining = i, remaining
    end
  else
    local retry = retry_after(previous, c, limit, window, elapsed, fixed)
    if retry > worst_retry then worst, worst_retry = i, retry end
  end
end

if worst == 0 then
  local reply = {0, 0, 0, 0, 0, 0, now}
  for i = 1, rules do
    local s = state[i]
    redis.call('HSET', KEYS[i + 2], 'w', s[1], 'c', s[2] + s[7], 'p', s[3])
    redis.call('PEXPIRE', KEYS[i + 2], 2 * s[4])
    reply[6 + 2 * i] = s[7]
    reply[7 + 2 * i] = s[8]
  end
  if best > 0 then
    local s = state[best]
    reply[2], reply[3], reply[4], reply[5] = best, s[5], best_remaining, s[6]
  end
  return reply
end

if auto_block then
  local blocks_max, window = tonumber(ARGV[2]), tonumber(ARGV[3])
  local index, c, p = roll(KEYS[2], window)
  local elapsed = now - index * window
  local used = math.ceil(p * (window - elapsed) / window) + c
  redis.call('HSET', KEYS[2], 'w', index, 'c', c + 1, 'p', p)
  redis.call('PEXPIRE', KEYS[2], 2 * window)
  if used >= blocks_max then
    redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[4]))
  end
end
local s = state[worst]
return {1, worst, s[5], 0, now + worst_retry, worst_retry, now}
"#;

/// What an admitting check granted one rule: `units` requests counted (this one and
/// `units - 1` to admit locally) and the room left after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub units: u64,
    pub remaining: u64,
    /// When the rule's current window ends, in Redis's clock, and Redis's clock now.
    pub reset_ms: u64,
    pub now_ms: u64,
}

pub struct RedisStore {
    connection: ConnectionManager,
    script: redis::Script,
}

impl RedisStore {
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            script: redis::Script::new(SCRIPT),
        }
    }

    pub fn connection(&self) -> &ConnectionManager {
        &self.connection
    }

    /// Checks and counts one request against every rule, each counted once.
    pub async fn check(&self, check: &Check<'_>) -> redis::RedisResult<Verdict> {
        let rules: Vec<(&super::Rule, u64)> = check.rules.iter().map(|r| (r, 1)).collect();
        self.check_leasing(&rules, check.auto_block.as_ref())
            .await
            .map(|(verdict, _)| verdict)
    }

    /// Checks one request against `rules`, each with the units it would like to lease; when
    /// admitted, answers what each rule granted (in order).
    pub async fn check_leasing(
        &self,
        rules: &[(&super::Rule, u64)],
        auto_block: Option<&super::AutoBlock>,
    ) -> redis::RedisResult<(Verdict, Vec<Grant>)> {
        let mut invocation = self.script.prepare_invoke();
        script_arguments(&mut invocation, rules, auto_block);
        let mut connection = self.connection.clone();
        let reply: Vec<u64> = invocation.invoke_async(&mut connection).await?;
        read_reply(rules, &reply)
    }
}

/// The script's keys and arguments: the auto-block counters (or placeholders), then each
/// rule's key, limit, window, kind and the units it would like.
fn script_arguments(
    invocation: &mut redis::ScriptInvocation<'_>,
    rules: &[(&super::Rule, u64)],
    auto_block: Option<&super::AutoBlock>,
) {
    match auto_block {
        Some(block) => {
            invocation
                .key(&block.block_key)
                .key(&block.count_key)
                .arg(1)
                .arg(block.blocks_max)
                .arg(block.window_ms)
                .arg(block.duration_ms);
        }
        None => {
            invocation.key("-").key("-").arg(0).arg(0).arg(1).arg(1);
        }
    }
    for (rule, want) in rules {
        invocation
            .key(&rule.key)
            .arg(rule.limit.limit)
            .arg(rule.limit.window_ms)
            .arg(u8::from(rule.limit.fixed))
            .arg((*want).max(1));
    }
}

/// The script's answer: status, the binding rule's index and figures, then (when admitted)
/// each rule's grant.
fn read_reply(
    rules: &[(&super::Rule, u64)],
    reply: &[u64],
) -> redis::RedisResult<(Verdict, Vec<Grant>)> {
    let shape_error = || {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "the rate-limit script answered an unexpected shape",
        ))
    };
    let Some(&[status, index, limit, remaining, reset_ms, retry_ms, now_ms]) = reply.get(..7)
    else {
        return Err(shape_error());
    };
    let reason = |index: u64| {
        usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| rules.get(i))
            .map(|(rule, _)| rule.reason)
    };
    let grants = if status == 0 {
        if reply.len() != 7 + 2 * rules.len() {
            return Err(shape_error());
        }
        reply[7..]
            .chunks_exact(2)
            .zip(rules)
            .map(|(pair, (rule, _))| Grant {
                units: pair[0],
                remaining: pair[1],
                reset_ms: rule_reset(rule, now_ms),
                now_ms,
            })
            .collect()
    } else {
        Vec::new()
    };
    let verdict = match status {
        0 => Verdict::Allowed {
            binding: reason(index).map(|_| super::Headline {
                limit,
                remaining,
                reset_ms,
            }),
        },
        1 => Verdict::Limited {
            reason: reason(index).unwrap_or("unknown"),
            limit,
            reset_ms,
            retry_after_ms: retry_ms,
        },
        _ => Verdict::Blocked {
            retry_after_ms: retry_ms,
        },
    };
    Ok((verdict, grants))
}

/// When the window `now_ms` falls in ends, for the rule (the script's `(index + 1) × window`).
fn rule_reset(rule: &super::Rule, now_ms: u64) -> u64 {
    let window = rule.limit.window_ms.max(1);
    (now_ms / window + 1) * window
}
