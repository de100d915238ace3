//! The cluster's ledger of account slots: which instance holds how many of each account's
//! `max_concurrent`, so the cap holds for their sum (see `crate::pool::cluster` for the rules).
//!
//! One hash per account, instance id → `held:expiry_ms` (Redis's own clock, so the instances' clocks do not
//! matter). Once a second each instance settles all its accounts in one script: holdings past their expiry
//! are dropped (a crashed instance's slots come back after the lease), and this instance is granted what it
//! asks for, but never more than the others leave free. Atomic in Redis, so two instances settling at once
//! cannot both take the same free slot.

use std::collections::HashMap;
use std::sync::Arc;

use super::Link;
use crate::pool::cluster::SlotWant;

/// KEYS: one ledger hash per account. ARGV: instance id, lease (ms), then per account its cap and this
/// instance's want. Returns the grants, in the order of KEYS.
const SETTLE: &str = r"
local me = ARGV[1]
local lease = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grants = {}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[1 + 2 * i])
  local want = tonumber(ARGV[2 + 2 * i])
  local fields = redis.call('HGETALL', key)
  local others = 0
  for j = 1, #fields, 2 do
    local who = fields[j]
    local held, expiry = string.match(fields[j + 1], '^(%d+):(%d+)$')
    if held == nil or tonumber(expiry) <= now then
      redis.call('HDEL', key, who)
    elseif who ~= me then
      others = others + tonumber(held)
    end
  end
  local grant = math.max(0, math.min(want, cap - others))
  if grant > 0 then
    redis.call('HSET', key, me, grant .. ':' .. (now + lease))
  else
    redis.call('HDEL', key, me)
  end
  redis.call('PEXPIRE', key, lease * 2)
  grants[i] = grant
end
return grants
";

impl Link {
    /// Settles this instance's slots of every account: its local cap from what the ledger granted, by
    /// account id. An error (Redis failed; the link is then down) leaves the caller on its fallback share.
    pub(super) async fn settle_slots(&self, wants: &[SlotWant]) -> Result<Arc<HashMap<String, u32>>, String> {
        if wants.is_empty() {
            return Ok(Arc::default());
        }
        let conn = self.conn.load_full().ok_or_else(|| "not connected".to_string())?;
        let mut pipe = redis::pipe();
        let settle = pipe.cmd("EVAL").arg(SETTLE).arg(wants.len());
        for w in wants {
            settle.arg(self.keys.slots(&w.account));
        }
        settle.arg(&self.instance).arg(self.settings.lease.as_millis() as u64);
        for w in wants {
            settle.arg(w.cap).arg(w.want);
        }
        let (grants,): (Vec<u32>,) = self.query("slots", &pipe, &conn).await?;
        Ok(Arc::new(
            wants.iter().zip(grants).map(|(w, grant)| (w.account.clone(), w.cap_from(grant))).collect(),
        ))
    }

    /// Leaves the cluster on a stop, once nothing is in flight: this instance's holdings go back to the
    /// ledgers and its heartbeat leaves the instance table, so the others count one instance fewer and a
    /// replacement gets its part at once instead of after `shared_state.lease`. Best effort: if Redis does not
    /// answer, the lease returns them as for a crashed instance.
    pub(super) async fn leave(&self, accounts: &[String]) {
        let Some(conn) = self.conn.load_full() else { return };
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL").arg(self.keys.instances()).arg(&self.instance).ignore();
        for account in accounts {
            pipe.cmd("HDEL").arg(self.keys.slots(account)).arg(&self.instance).ignore();
        }
        match self.query::<()>("leave", &pipe, &conn).await {
            Ok(()) => tracing::info!(instance = %self.instance, "left the cluster; slots given back"),
            Err(e) => {
                tracing::warn!(error = %e, "could not leave the cluster; its slots return after the lease")
            }
        }
    }
}
