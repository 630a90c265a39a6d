//! WebRTC handshakes in progress, capped in all, per meeting and per client address.
//!
//! A handshake costs the driver a str0m `Rtc`, DTLS state and a mixer leg until ICE and DTLS
//! are up or it times out (`handshake_timeout`), so a client that posts offers and never
//! connects could fill the bridge. Each WHIP join holds a slot from before its offer is looked
//! at until its peer connects or goes; a join over any cap is refused (429).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::conference::limiter::source_of;

/// The caps (`[webrtc] max_handshakes`, `max_handshakes_per_conference`,
/// `max_handshakes_per_address`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeLimits {
    pub total: usize,
    pub per_conference: usize,
    pub per_address: usize,
}

/// Which cap refused a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeCap {
    Address,
    Conference,
    Total,
}

impl HandshakeCap {
    /// The `reason` label of `confab_webrtc_handshakes_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeCap::Address => "address",
            HandshakeCap::Conference => "conference",
            HandshakeCap::Total => "total",
        }
    }
}

/// Who holds a slot: the client address and the meeting it joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HandshakeKey {
    pub(crate) client: IpAddr,
    pub(crate) cid: String,
}

/// The slots held. Both maps have an entry only while some slot holds its key (removed when
/// its count reaches zero), so together they never hold more than `limits.total` entries
/// each, whatever addresses connect and whatever meeting IDs URLs name.
#[derive(Debug, Default)]
pub(crate) struct Handshakes {
    total: usize,
    /// By source: an IPv4 address, or an IPv6 /64 (one host may hold a whole /64).
    by_address: HashMap<IpAddr, usize>,
    /// Keys are meeting IDs from the WHIP URL (checked credentials first, but bounded
    /// regardless by the total cap, as above).
    by_conference: HashMap<String, usize>,
}

impl Handshakes {
    /// Takes a slot for `key`, or names the first cap it would break (most specific first,
    /// so that one address over its share is told so even when the bridge is full too).
    pub(crate) fn take(
        &mut self,
        key: &HandshakeKey,
        limits: HandshakeLimits,
    ) -> Result<(), HandshakeCap> {
        let count = |n: Option<&usize>| n.copied().unwrap_or(0);
        let source = source_of(key.client);
        if count(self.by_address.get(&source)) >= limits.per_address {
            return Err(HandshakeCap::Address);
        }
        if count(self.by_conference.get(&key.cid)) >= limits.per_conference {
            return Err(HandshakeCap::Conference);
        }
        if self.total >= limits.total {
            return Err(HandshakeCap::Total);
        }
        self.total += 1;
        *self.by_address.entry(source).or_insert(0) += 1;
        *self.by_conference.entry(key.cid.clone()).or_insert(0) += 1;
        Ok(())
    }

    /// Gives back a slot `take` gave `key`.
    pub(crate) fn give_back(&mut self, key: &HandshakeKey) {
        // A key unknown here was already given back: nothing is lowered twice.
        let source = source_of(key.client);
        let Some(n) = self.by_address.get_mut(&source) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.by_address.remove(&source);
        }
        if let Some(n) = self.by_conference.get_mut(&key.cid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_conference.remove(&key.cid);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Slots held: in all, by `client`, by `cid`.
    #[cfg(test)]
    pub(crate) fn held(&self, client: IpAddr, cid: &str) -> (usize, usize, usize) {
        (
            self.total,
            self.by_address
                .get(&source_of(client))
                .copied()
                .unwrap_or(0),
            self.by_conference.get(cid).copied().unwrap_or(0),
        )
    }

    /// Entries in the maps (for the bound's test).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_conference.len())
    }
}

pub(crate) type SharedHandshakes = Arc<Mutex<Handshakes>>;

/// Gives back `key`'s slot (a poisoned table is left as it is: nothing is reserved from it
/// again either).
pub(crate) fn release(table: &Mutex<Handshakes>, key: &HandshakeKey) {
    if let Ok(mut t) = table.lock() {
        t.give_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: [u8; 4], cid: &str) -> HandshakeKey {
        HandshakeKey {
            client: IpAddr::from(client),
            cid: cid.to_owned(),
        }
    }

    const LIMITS: HandshakeLimits = HandshakeLimits {
        total: 5,
        per_conference: 3,
        per_address: 2,
    };

    #[test]
    fn each_cap_refuses_its_excess_and_slots_come_back() {
        let mut t = Handshakes::default();
        let a = key([10, 0, 0, 1], "1111");
        // Per address: a third from one address is refused, on any meeting.
        assert_eq!(t.take(&a, LIMITS), Ok(()));
        assert_eq!(t.take(&a, LIMITS), Ok(()));
        assert_eq!(t.take(&a, LIMITS), Err(HandshakeCap::Address));
        assert_eq!(
            t.take(&key([10, 0, 0, 1], "2222"), LIMITS),
            Err(HandshakeCap::Address)
        );
        // Per meeting: a fourth on 1111 is refused whoever asks.
        assert_eq!(t.take(&key([10, 0, 0, 2], "1111"), LIMITS), Ok(()));
        assert_eq!(
            t.take(&key([10, 0, 0, 3], "1111"), LIMITS),
            Err(HandshakeCap::Conference)
        );
        assert_eq!(t.held(a.client, "1111"), (3, 2, 3));
        // In all: five, then no more from anyone for anything.
        assert_eq!(t.take(&key([10, 0, 0, 3], "2222"), LIMITS), Ok(()));
        assert_eq!(t.take(&key([10, 0, 0, 4], "3333"), LIMITS), Ok(()));
        assert_eq!(
            t.take(&key([10, 0, 0, 5], "4444"), LIMITS),
            Err(HandshakeCap::Total)
        );
        // A slot given back is taken again; giving one back twice frees one only.
        t.give_back(&key([10, 0, 0, 4], "3333"));
        t.give_back(&key([10, 0, 0, 4], "3333"));
        assert_eq!(t.held(a.client, "1111").0, 4);
        assert_eq!(t.take(&key([10, 0, 0, 5], "4444"), LIMITS), Ok(()));
        assert_eq!(
            t.take(&key([10, 0, 0, 6], "4444"), LIMITS),
            Err(HandshakeCap::Total)
        );
        t.give_back(&a);
        assert_eq!(t.take(&key([10, 0, 0, 9], "9999"), LIMITS), Ok(()));
    }

    /// One IPv6 host has a whole /64: its addresses share one per-address count.
    #[test]
    fn an_ipv6_64_counts_as_one_address() {
        let mut t = Handshakes::default();
        let host = |i: u16| HandshakeKey {
            client: IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, i]),
            cid: "1111".to_owned(),
        };
        assert_eq!(t.take(&host(1), LIMITS), Ok(()));
        assert_eq!(t.take(&host(2), LIMITS), Ok(()));
        assert_eq!(t.take(&host(3), LIMITS), Err(HandshakeCap::Address));
        let elsewhere = HandshakeKey {
            client: IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1]),
            cid: "2222".to_owned(),
        };
        assert_eq!(t.take(&elsewhere, LIMITS), Ok(()));
        t.give_back(&host(2));
        assert_eq!(t.take(&host(4), LIMITS), Ok(()));
        assert_eq!(t.entries(), (2, 2));
    }

    #[test]
    fn entries_go_with_their_last_slot() {
        let mut t = Handshakes::default();
        let limits = HandshakeLimits {
            total: 1000,
            per_conference: 1000,
            per_address: 1000,
        };
        let keys: Vec<HandshakeKey> = (0..300u32)
            .map(|i| key((0x0a00_0000 + i).to_be_bytes(), &format!("{}", 1000 + i)))
            .collect();
        for k in &keys {
            assert_eq!(t.take(k, limits), Ok(()));
        }
        assert_eq!(t.entries(), (300, 300));
        for k in &keys {
            t.give_back(k);
        }
        assert_eq!(t.entries(), (0, 0));
        assert_eq!(t.held(keys[0].client, "1000"), (0, 0, 0));
    }
}
