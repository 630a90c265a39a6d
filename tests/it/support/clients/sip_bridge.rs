//! The in-process bridge the SIP client tests call: an engine and a SIP server on free loopback
//! ports, with every SIP message it sends checked by the suite's wire scan when it stops.

use std::sync::Arc;
use std::time::Duration;

use confab::engine::Engine;
use confab::media::codec::Codec;
use confab::sip::attendant::AttendantSettings;
use confab::sip::prompts::PromptBook;
use confab::sip::server::{AttendantConfig, SipServer};
use confab::sip::uas::UasSettings;

use crate::support;

/// A bridge with SIP on a free loopback port.
pub struct SipBridge {
    pub runtime: tokio::runtime::Runtime,
    pub engine: Arc<Engine>,
    pub sip: Option<SipServer>,
    /// The engine's events, for more subscribers.
    pub events: tokio::sync::broadcast::Sender<confab::mixer::conference::ConferenceEvent>,
}

impl SipBridge {
    /// The participant of `conference` whose URI names `name` (`sip:name@`), if any.
    pub fn participant(
        &self,
        conference: &str,
        name: &str,
    ) -> Option<confab::conference::Participant> {
        self.engine
            .roster(conference)
            .wait()
            .ok()?
            .into_iter()
            .find(|p| p.uri.contains(&format!("sip:{name}@")))
    }

    pub fn start() -> Self {
        Self::with_room(20)
    }

    /// A bridge whose engine has room for `legs` legs.
    pub fn with_room(legs: u16) -> Self {
        Self::configured(legs, |_| {})
    }

    /// A bridge that also takes SIP over TLS (on a free port) with the test PKI's
    /// certificate, and exchanges SDES keys only there (the default policy).
    pub fn with_tls(pki: &support::pki::TestPki) -> Self {
        let config = confab::tls::server_config(&pki.cert, &pki.key, &[]).unwrap();
        let client = confab::tls::client_config(Some(&pki.ca)).unwrap();
        Self::configured(20, |s| {
            s.tls = Some(confab::sip::uas::TlsListener {
                listen: "127.0.0.1:0".parse().unwrap(),
                config,
                client: Some(client),
            });
            s.sdes_over_cleartext = false;
        })
    }

    /// A bridge with room for `legs` legs and its SIP settings changed by `adjust`.
    pub fn configured(legs: u16, adjust: impl FnOnce(&mut UasSettings)) -> Self {
        Self::configured_with(legs, adjust, |_| {})
    }

    /// A bridge whose attendant (prompts, languages, keypad) is changed by `adjust`.
    pub fn with_attendant(adjust: impl FnOnce(&mut AttendantConfig)) -> Self {
        Self::configured_with(20, |_| {}, adjust)
    }

    fn configured_with(
        legs: u16,
        adjust: impl FnOnce(&mut UasSettings),
        adjust_attendant: impl FnOnce(&mut AttendantConfig),
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = Arc::new(support::engine_sized(
            Duration::from_secs(30),
            Default::default(),
            legs,
        ));
        let events = engine.broadcast_events().unwrap();
        let mut settings = UasSettings {
            local: "127.0.0.1:0".parse().unwrap(),
            trusted: vec![confab::config::Network::loopback_v4()],
            access_user: "conference".into(),
            codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
            outbound_proxy: None,
            dispatcher: None,
            max_calls: 1000,
            invites_per_second: 50,
            advertise: None,
            media_advertise: None,
            route: confab::addr::route_source,
            tls: None,
            srtp: confab::config::SrtpPolicy::Optional,
            sdes_over_cleartext: true,
            conference_srtp: Default::default(),
            auth: Default::default(),
            credentials: Vec::new(),
            kept_while_draining: Default::default(),
            presence: None,
        };
        adjust(&mut settings);
        let mut attendant = AttendantConfig {
            prompts: Arc::new(PromptBook::embedded(&["en".to_owned()]).unwrap()),
            menu_languages: Vec::new(),
            access_users: Vec::new(),
            settings: AttendantSettings::default(),
            max_failures_per_source: 3,
            keypad: Default::default(),
            placement: None,
            store: None,
            hand_off: None,
        };
        adjust_attendant(&mut attendant);
        support::wire_scan::install_in_process();
        let sip = runtime
            .block_on(SipServer::start(settings, attendant, Arc::clone(&engine)))
            .unwrap();
        SipBridge {
            runtime,
            engine,
            sip: Some(sip),
            events,
        }
    }

    pub fn sip_addr(&self) -> std::net::SocketAddr {
        self.sip.as_ref().unwrap().udp
    }

    /// Where SIP over TLS is taken (a bridge made `with_tls`).
    pub fn tls_addr(&self) -> std::net::SocketAddr {
        self.sip.as_ref().unwrap().tls.expect("a bridge with TLS")
    }
}

impl Drop for SipBridge {
    fn drop(&mut self) {
        if let Some(sip) = self.sip.take() {
            let local = sip.udp;
            self.runtime.block_on(sip.stop());
            support::wire_scan::check_in_process(local);
        }
    }
}
