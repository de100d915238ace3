//! Counting client connections and in-flight streams, so that a flood from one address cannot take every
//! socket and so that the gateway stays below its file-descriptor limit (running out of descriptors is the
//! gateway's own fault, and it used to open breakers on healthy accounts and silence `/admin`).
//!
//! Each client connection costs one descriptor, each in-flight request one more for its upstream connection
//! (an HTTP/2 client multiplexes many requests on one connection, so streams are counted apart). Both counts
//! stay below `limits.max_connections`, which is itself capped by what `RLIMIT_NOFILE` allows after a
//! reserve for the admin listener, the store, listening sockets and logs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection or a request was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway as a whole is at `max_connections`.
    Total,
    /// This client address is at `max_connections_per_ip`.
    PerIp,
}

impl Refusal {
    /// The metric label (`levitate_connections_refused_total{reason}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        }
    }
}

/// Live counts: connections, in-flight streams and, per client address, both together.
#[derive(Default)]
pub struct ConnectionLimiter {
    connections: AtomicUsize,
    streams: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// Which total a [`Slot`] holds a place in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Connection,
    Stream,
}

/// One place held; given back when dropped.
pub struct Slot {
    limiter: Arc<ConnectionLimiter>,
    kind: Option<Kind>,
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnectionLimiter::default())
    }

    fn total(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Connection => &self.connections,
            Kind::Stream => &self.streams,
        }
    }

    /// Takes a place in the `kind` total (unless `kind` is `None`) and, when `ip` is given, one of that
    /// address's places. Both or neither: a refusal holds nothing.
    pub fn acquire(
        self: &Arc<Self>,
        kind: Option<Kind>,
        max_total: usize,
        ip: Option<IpAddr>,
        max_per_ip: u32,
    ) -> Result<Slot, Refusal> {
        if let Some(kind) = kind {
            let total = self.total(kind);
            if total.fetch_add(1, Ordering::AcqRel) >= max_total {
                total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::Total);
            }
        }
        // From here the slot owns the total's place, so an early return gives it back.
        let mut slot = Slot { limiter: self.clone(), kind, ip: None };
        if let Some(ip) = ip {
            let mut map = self.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = map.entry(ip).or_insert(0);
            if *count >= max_per_ip {
                if *count == 0 {
                    map.remove(&ip);
                }
                return Err(Refusal::PerIp);
            }
            *count += 1;
            slot.ip = Some(ip);
        }
        Ok(slot)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// How many addresses hold places (entries are removed when their count drops to zero).
    pub fn tracked_addresses(&self) -> usize {
        self.per_ip.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(kind) = self.kind {
            self.limiter.total(kind).fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(ip) = self.ip {
            let mut map = self.limiter.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(count) = map.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// The limiter and the descriptor budget, shared by the client listener and the gateway's request hook.
#[derive(Clone)]
pub struct Connections {
    pub limiter: Arc<ConnectionLimiter>,
    /// What `RLIMIT_NOFILE` allows ([`connection_cap`]); `None` when unlimited or unknown.
    fd_cap: Option<usize>,
}

impl Connections {
    pub fn new(fd_cap: Option<usize>) -> Self {
        Connections { limiter: ConnectionLimiter::new(), fd_cap }
    }

    /// The effective limit: the configured one, lowered to what the descriptors allow.
    pub fn max_connections(&self, configured: usize) -> usize {
        self.fd_cap.map_or(configured, |cap| configured.min(cap))
    }
}

/// Descriptors kept out of the client budget: the admin listener and its clients, the store, listening
/// sockets, logs and control-plane calls (token refresh, discovery) — an eighth of the limit, 32 to 1024.
pub fn fd_reserve(nofile: u64) -> u64 {
    (nofile / 8).clamp(32, 1024)
}

/// Streams per upstream connection over HTTP/1.1, for the descriptor budget: one.
pub const H1_STREAMS_PER_CONNECTION: u64 = 1;
/// Streams per upstream connection over HTTP/2, for the descriptor budget: `upstream.rs` allows 100 a
/// connection, counted as 25 since Pingora opens more connections than the minimum under a burst (the
/// open-streams benchmark saw 50–77 for 5,000 streams).
pub const H2_STREAMS_PER_CONNECTION: u64 = 25;

/// The most connections (and, apart, in-flight streams) `nofile` descriptors allow after the reserve: one
/// descriptor per stream on the client side and a share of an upstream connection, which is a whole one
/// over HTTP/1.1 (two per stream) and a 25th over HTTP/2. Never below 16, so a tiny limit still serves.
pub fn connection_cap(nofile: u64, streams_per_upstream_connection: u64) -> usize {
    let per = streams_per_upstream_connection.max(1);
    let usable = nofile.saturating_sub(fd_reserve(nofile)) * per / (per + 1);
    usize::try_from(usable).unwrap_or(usize::MAX).max(16)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the soft default of 1024 is far below what a gateway
/// needs, and raising it needs no privilege) and returns the resulting soft limit, if it can be read.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer, which outlives the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn the_total_is_enforced_and_freed_on_drop() {
        let limiter = ConnectionLimiter::new();
        let a = limiter.acquire(Some(Kind::Connection), 2, None, 0).unwrap();
        let _b = limiter.acquire(Some(Kind::Connection), 2, None, 0).unwrap();
        assert_eq!(limiter.acquire(Some(Kind::Connection), 2, None, 0).err(), Some(Refusal::Total));
        assert_eq!(limiter.connections(), 2);
        drop(a);
        assert!(limiter.acquire(Some(Kind::Connection), 2, None, 0).is_ok());
        // Streams are a separate total.
        assert!(limiter.acquire(Some(Kind::Stream), 1, None, 0).is_ok());
    }

    #[test]
    fn one_address_is_held_to_its_own_limit_while_others_pass() {
        let limiter = ConnectionLimiter::new();
        let first = limiter.acquire(Some(Kind::Connection), 100, ip(1), 2).unwrap();
        let _second = limiter.acquire(Some(Kind::Connection), 100, ip(1), 2).unwrap();
        assert_eq!(limiter.acquire(Some(Kind::Connection), 100, ip(1), 2).err(), Some(Refusal::PerIp));
        // The refused attempt gave its place in the total back.
        assert_eq!(limiter.connections(), 2);
        assert!(limiter.acquire(Some(Kind::Connection), 100, ip(2), 2).is_ok());
        drop(first);
        assert!(limiter.acquire(Some(Kind::Connection), 100, ip(1), 2).is_ok());
    }

    #[test]
    fn addresses_are_forgotten_when_their_last_place_is_freed() {
        let limiter = ConnectionLimiter::new();
        let slots: Vec<_> =
            (0..50).map(|i| limiter.acquire(Some(Kind::Connection), 100, ip(i), 4).unwrap()).collect();
        assert_eq!(limiter.tracked_addresses(), 50);
        // A per-address place without a total (a request behind a trusted proxy).
        let request = limiter.acquire(None, 0, ip(200), 1).unwrap();
        assert_eq!(limiter.acquire(None, 0, ip(200), 1).err(), Some(Refusal::PerIp));
        drop(slots);
        drop(request);
        assert_eq!(limiter.tracked_addresses(), 0);
        assert_eq!(limiter.connections(), 0);
        // A zero limit refuses without leaving an entry behind.
        assert!(limiter.acquire(None, 0, ip(3), 0).is_err());
        assert_eq!(limiter.tracked_addresses(), 0);
    }

    #[test]
    fn the_cap_keeps_two_descriptors_per_stream_below_the_limit() {
        let h1 = H1_STREAMS_PER_CONNECTION;
        assert_eq!(fd_reserve(1024), 128);
        assert_eq!(connection_cap(1024, h1), 448);
        assert_eq!(connection_cap(65536, h1), (65536 - 1024) / 2);
        assert_eq!(connection_cap(20, h1), 16);
        for nofile in [256u64, 1024, 4096, 65536, 1 << 20] {
            let cap = connection_cap(nofile, h1) as u64;
            assert!(2 * cap + fd_reserve(nofile) <= nofile, "{nofile}");
        }
    }

    #[test]
    fn over_http2_a_stream_needs_one_descriptor_and_a_share_of_a_connection() {
        let h2 = H2_STREAMS_PER_CONNECTION;
        // This box's hard limit: 9,488 streams over HTTP/1.1, 18,246 over HTTP/2.
        assert_eq!(connection_cap(20_000, H1_STREAMS_PER_CONNECTION), 9_488);
        assert_eq!(connection_cap(20_000, h2), 18_246);
        for nofile in [256u64, 1024, 4096, 65536, 1 << 20] {
            let cap = connection_cap(nofile, h2) as u64;
            assert!(cap + cap.div_ceil(h2) + fd_reserve(nofile) <= nofile, "{nofile}");
        }
    }
}
