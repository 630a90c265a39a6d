//! `confab serve`: logging, the runtime, and a clean shutdown on SIGINT or SIGTERM.

use anyhow::Context;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Runs the bridge until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config)?;
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            config.storage.data_dir.display()
        )
    })?;
    let threads = match config.mixer.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("confab-io")
        .build()
        .context("cannot start the runtime")?;
    let store = crate::store::Store::connect(&config.storage, &config.storage.node_name())
        .context("cannot open the database")?;
    let records = store
        .record_writer()
        .context("cannot start the call record writer")?;
    prune_records(&store, config.storage.records_retention_days);
    // Several nodes on one database: meetings are placed by lease.
    let placement = match config.storage.url {
        None => None,
        Some(_) => {
            let me = config
                .node_address()
                .map_err(|(key, why)| anyhow::anyhow!("{key}: {why}"))?;
            info!(node = %me.node, sip = %me.sip, api = %me.api, "placement by lease in the shared database");
            Some(std::sync::Arc::new(crate::placement::Placement::new(
                store.clone(),
                me,
                std::time::Duration::from_secs(config.storage.lease_secs),
            )))
        }
    };
    // Before the engine: its mixer threads ask for real-time scheduling as they start.
    crate::mixer::realtime::set_policy(config.mixer.realtime);
    // And before it too: its conferences say their own notices in the default language.
    crate::mixer::room_sounds::set_default_language(&config.sip.language);
    let engine = std::sync::Arc::new(
        crate::engine::Engine::start(crate::engine::EngineSettings {
            records: Some(records.sender.clone()),
            ..crate::engine::EngineSettings::from_config(&config)
        })
        .context("cannot start the media engine")?,
    );
    let events = engine
        .broadcast_events()
        .context("cannot start the engine's event stream")?;
    let prompts = crate::sip::prompts::PromptBook::load(
        config.sip.prompts_dir.as_deref(),
        &config.sip.prompt_languages(),
    )
    .context("cannot load the attendant's prompts")?;
    let prompts = std::sync::Arc::new(prompts);
    // Said to everyone still in a call when the drain's time is up, in the language each hears.
    let restarting = prompts.voices(crate::sip::prompts::Prompt::Restarting);
    // Join tokens, and the passes of callers one node's attendant hands to the node that runs
    // their meeting: one secret, `webrtc.token_secret` (the same on every node).
    let tokens = std::sync::Arc::new(
        crate::webrtc::token::TokenSigner::new(config.webrtc.token_secret.as_deref())
            .context("no randomness for the join token secret")?,
    );
    let attendant = crate::sip::server::AttendantConfig {
        prompts: std::sync::Arc::clone(&prompts),
        menu_languages: config.sip.menu_languages.clone(),
        access_users: config
            .sip
            .access_users
            .iter()
            .map(|a| (a.user.clone(), a.language.clone()))
            .collect(),
        settings: crate::sip::attendant::AttendantSettings {
            redirect: config.sip.dispatcher.is_some(),
            ..Default::default()
        },
        max_failures_per_source: config.sip.max_failures_per_source,
        keypad: config
            .keypad
            .key_map()
            .context("keypad: the configuration was checked, yet its keys are wrong")?,
        placement: placement.clone(),
        store: Some(store.clone()),
        // Passes are made and taken only where several nodes share the meetings.
        hand_off: placement.as_ref().map(|_| std::sync::Arc::clone(&tokens)),
    };
    let sip_tls = match (
        config.sip.tls_address(),
        &config.sip.tls_cert,
        &config.sip.tls_key,
    ) {
        (Some(listen), Some(cert), Some(key)) => Some(crate::sip::uas::TlsListener {
            listen,
            config: crate::tls::server_config(cert, key, &[])
                .context("cannot use sip.tls_cert / sip.tls_key")?,
            // A CA bundle named in the config must be usable; the system's may be absent, and
            // then only dial-out over TLS is off.
            client: match (
                &config.sip.tls_ca,
                crate::tls::client_config(config.sip.tls_ca.as_deref()),
            ) {
                (_, Ok(client)) => Some(client),
                (Some(_), Err(e)) => return Err(e).context("cannot use sip.tls_ca"),
                (None, Err(e)) => {
                    tracing::warn!(error = %e, "no CA bundle: dial-out over TLS is off (set sip.tls_ca)");
                    None
                }
            },
        }),
        _ => None,
    };
    if config.media.sdes_over_cleartext {
        tracing::warn!(
            "media.sdes_over_cleartext is on: SRTP keys travel in SIP over UDP and TCP, where \
             anyone who can read the signalling can decrypt the media"
        );
    }
    runtime.block_on(async {
        // Watch the signals before saying we started, so a signal sent on that news is caught.
        let signals = Signals::watch()?;
        let sip = crate::sip::server::SipServer::start(
            crate::sip::uas::UasSettings {
                local: config.sip.listen,
                trusted: config.sip.trusted.clone(),
                access_user: config.sip.access_user.clone(),
                codecs: config.sip.codec_preference(),
                outbound_proxy: config.sip.outbound_proxy.clone(),
                dispatcher: config.sip.dispatcher,
                max_calls: config.sip.max_calls,
                invites_per_second: config.sip.invites_per_second,
                advertise: config.sip.advertise,
                media_advertise: config.media.advertise,
                route: crate::addr::route_source,
                tls: sip_tls,
                srtp: config.media.srtp,
                sdes_over_cleartext: config.media.sdes_over_cleartext,
                conference_srtp: Default::default(),
                auth: crate::sip::uas::AuthSettings {
                    realm: config.sip.realm.clone(),
                    users: config.sip.users.clone(),
                    max_failures: config.sip.max_failures_per_source,
                },
                credentials: config.sip.credentials.clone(),
                kept_while_draining: placement
                    .clone()
                    .map(|p| crate::sip::uas::KeptMeetings::new(move |m| p.holds(m)))
                    .unwrap_or_default(),
                presence: config.presence.server_addr().ok().flatten().map(|server| {
                    crate::sip::presence::PresenceSettings {
                        server,
                        // The shell puts the address the server reaches us at here.
                        local: config.sip.listen,
                        expires: config.presence.expires_secs,
                    }
                }),
            },
            attendant,
            std::sync::Arc::clone(&engine),
        )
        .await
        .with_context(|| {
            let tls = config
                .sip
                .tls_address()
                .map(|a| format!(" (and TLS on {a})"))
                .unwrap_or_default();
            format!("cannot listen for SIP on {}{tls}", config.sip.listen)
        })?;
        let sip = std::sync::Arc::new(sip);
        let state = crate::api::AppState::new(
            std::sync::Arc::clone(&engine),
            Some(std::sync::Arc::clone(&sip)),
            store.clone(),
            events.subscribe(),
            config.api.token.clone(),
            config.mixer.max_talkers,
            config.sip.codec_preference(),
        );
        let webrtc = crate::webrtc::WebRtc::start(crate::webrtc::WebRtcSettings::from_config(
            &config.webrtc,
        ))
        .with_context(|| format!("cannot listen for WebRTC on {}", config.webrtc.listen))?;
        let mut state = state
            .with_webrtc(std::sync::Arc::clone(&webrtc), tokens)
            .with_conference_labels(config.metrics.conference_labels);
        state.media_advertise = config.media.advertise;
        state.srtp = config.media.srtp;
        state.sdes_over_cleartext = config.media.sdes_over_cleartext;
        state.placement = placement.clone();
        let recorder = std::sync::Arc::new(
            crate::recording::Recorder::start(crate::recording::RecordingSettings {
                dir: config.storage.data_dir.join("recordings"),
                retention_days: config.recording.retention_days,
                max_bytes: config.recording.max_bytes,
            })
            .context("cannot start the recording writer")?,
        );
        let state = state.with_recordings(std::sync::Arc::clone(&recorder));
        // Webhooks: started before the stored conferences, whose start is an event too.
        if let Some((tap, occurrences)) = engine.take_webhook_events() {
            crate::webhooks::start(&config.webhooks, store.clone(), &tap, occurrences)
                .context("cannot start the webhooks")?;
            if !config.webhooks.is_empty() {
                recorder.on_change(move |notice| tap.recording(&notice));
            }
        }
        // Conferences kept from before the restart.
        let stored = store
            .conferences()
            .context("cannot read the stored conferences")?;
        for c in &stored {
            if let Err(e) = crate::api::start_conference(&state, c).await {
                tracing::warn!(conference = %c.id, error = ?e, "stored conference not started");
            }
        }
        let placement_thread = placement
            .clone()
            .map(|p| {
                // Kamailio's dispatcher set in the same database, kept by the nodes.
                let dispatcher = match (&config.storage.url, config.storage.dispatcher_set) {
                    (Some(url), set) if set > 0 => {
                        Some(crate::store::DispatcherTable::new(url, set, p.me())?)
                    }
                    _ => None,
                };
                PlacementThread::start(p, state.clone(), dispatcher).map_err(anyhow::Error::from)
            })
            .transpose()
            .context("cannot start the placement thread")?;
        let api_tls = match (&config.api.tls_cert, &config.api.tls_key) {
            (Some(cert), Some(key)) => Some(
                crate::api::ApiTls::from_files(cert, key, config.api.hsts)
                    .context("cannot use api.tls_cert / api.tls_key")?,
            ),
            _ => None,
        };
        let api_scheme = if api_tls.is_some() { "https" } else { "http" };
        let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let (api_addr, api_task) =
            crate::api::serve(config.api.listen, state.clone(), api_tls, async {
                let _ = api_stopped.await;
            })
            .await
            .with_context(|| format!("cannot listen for the API on {}", config.api.listen))?;
        info!(
            sip = %config.sip.listen,
            api = %format!("{api_scheme}://{api_addr}"),
            webrtc = %webrtc.local_addr(),
            conferences = stored.len(),
            rtp_ports = %format!("{}-{}", config.media.rtp_port_min, config.media.rtp_port_max),
            data_dir = %config.storage.data_dir.display(),
            mixer_threads = threads,
            "confab started"
        );
        let mut signals = signals;
        let signal = signals.recv().await;
        if signal == "SIGTERM" {
            // Drain: no new conferences or calls; those in progress may end by themselves.
            info!(signal, "draining");
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            sip.set_draining(true);
            let deadline = tokio::time::Instant::now() + config.api.drain_timeout();
            let mut at_once = false;
            loop {
                let busy = present(&engine).await;
                if busy == 0 || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    s = signals.recv() => {
                        info!(signal = s, "stopping at once");
                        at_once = true;
                        break;
                    }
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                }
            }
            if !at_once {
                // Those still in a call are told why it ends before it does.
                let told = tell_everyone(&engine, &restarting).await;
                if told > 0 {
                    info!(
                        participants = told,
                        "telling the callers left that the bridge restarts"
                    );
                    let longest = restarting.iter().map(|(_, a)| a.len()).max();
                    let said = crate::call::playing_time(longest.unwrap_or(0))
                        + std::time::Duration::from_millis(800);
                    tokio::select! {
                        _ = signals.recv() => info!("stopping at once"),
                        _ = tokio::time::sleep(said) => {}
                    }
                }
            }
        }
        info!(signal, "shutting down");
        let _ = api_stop.send(());
        let _ = api_task.await;
        // Open recordings get their last page and their sidecar.
        recorder.shutdown();
        if let Ok(sip) = std::sync::Arc::try_unwrap(sip) {
            sip.stop().await;
        }
        // The calls are over: the meetings are free for other nodes at once, not after a
        // lease (off the runtime's threads: the release waits on the database).
        let _ = tokio::task::spawn_blocking(move || drop(placement_thread)).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    // Every record sent so far reaches the disk.
    records.flush();
    info!("stopped");
    Ok(())
}

/// With several nodes on one database: every `lease / 3`, brings this node's conferences to
/// the stored ones (created, changed or deleted through another node) and renews this node's
/// leases, releasing those of meetings left empty and ending those lost. Stopped, and every
/// lease released, on drop.
struct PlacementThread {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PlacementThread {
    fn start(
        placement: std::sync::Arc<crate::placement::Placement>,
        state: crate::api::AppState,
        mut dispatcher: Option<crate::store::DispatcherTable>,
    ) -> std::io::Result<PlacementThread> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("confab-placement".into())
            .spawn(move || {
                let mut seen = crate::api::SeenConferences::new();
                loop {
                    // In the proxy's set while taking calls; out of it once draining.
                    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
                    keep_listed(dispatcher.as_mut(), !draining);
                    crate::api::sync_conferences(&state, &mut seen);
                    let engine = &state.engine;
                    let lost = placement.renew(&|meeting| {
                        // On this thread of its own: it may wait for a mixer thread.
                        engine.roster(meeting).wait().is_ok_and(|r| {
                            r.iter().any(|p| {
                                !matches!(p.state, crate::conference::State::Disconnected(_))
                            })
                        })
                    });
                    // Another node may run these now: they end here, and their callers who
                    // dial again reach the owner (the fence against a meeting on two nodes).
                    for meeting in lost {
                        let _ = engine.control(&meeting, crate::mixer::Control::End);
                    }
                    match stopped.recv_timeout(placement.renew_every()) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
                keep_listed(dispatcher.as_mut(), false);
                placement.release_all();
            })?;
        Ok(PlacementThread {
            stop,
            thread: Some(thread),
        })
    }
}

/// Lists this node in Kamailio's dispatcher set, or takes it out (a failure is logged and
/// tried again at the next round).
fn keep_listed(dispatcher: Option<&mut crate::store::DispatcherTable>, listed: bool) {
    if let Some(table) = dispatcher
        && let Err(e) = table.keep(listed)
    {
        tracing::warn!(error = %e, listed, "Kamailio's dispatcher table not updated");
    }
}

impl Drop for PlacementThread {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Deletes closed call records older than the retention (none when it is 0): at start, and
/// every hour from a thread of its own (it ends with the process).
fn prune_records(store: &crate::store::Store, days: u32) {
    if days == 0 {
        return;
    }
    let keep = std::time::Duration::from_secs(u64::from(days) * 86_400);
    let once = move |store: &crate::store::Store| {
        let before = std::time::SystemTime::now()
            .checked_sub(keep)
            .unwrap_or(std::time::UNIX_EPOCH);
        match store.prune_records(crate::store::unix_ms(before)) {
            Ok(0) => {}
            Ok(n) => info!(records = n, days, "old call records deleted"),
            Err(e) => tracing::warn!(error = %e, "old call records not deleted"),
        }
    };
    once(store);
    let store = store.clone();
    let started = std::thread::Builder::new()
        .name("confab-retention".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                once(&store);
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no thread to delete old call records");
    }
}

/// Participants present in any conference (the attendant's lobby included).
async fn present(engine: &crate::engine::Engine) -> usize {
    let mut present = 0;
    for c in engine.conference_ids() {
        if let Ok(roster) = engine.roster(&c).await {
            present += roster
                .iter()
                .filter(|p| !matches!(p.state, crate::conference::State::Disconnected(_)))
                .count();
        }
    }
    present
}

/// Plays `voices` to every participant present in any conference, each in the language it
/// hears; how many.
async fn tell_everyone(engine: &crate::engine::Engine, voices: &crate::mixer::Voices) -> usize {
    let mut told = 0;
    for conference in engine.conference_ids() {
        let Ok(roster) = engine.roster(&conference).await else {
            continue;
        };
        for p in roster.iter().filter(|p| p.state.is_present()) {
            if engine
                .play_in_language(&conference, p.id, std::sync::Arc::clone(voices))
                .await
                .is_ok()
            {
                told += 1;
            }
        }
    }
    told
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::try_new(s).context("RUST_LOG")?,
        _ => EnvFilter::try_new(&config.log.level)
            .with_context(|| format!("log.level: `{}` is not a valid filter", config.log.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// SIGINT and SIGTERM, watched from creation on.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    /// Waits for either and names the one that came.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
