//! flock-appliance: runs one or many simulated appliances against a flock server.
//!
//! `cli` is the command line, `personas` the --personas file, `peers` the log-ins' WebRTC
//! peers, `output` the event lines; this file starts the appliances and runs their events.

mod cli;
mod output;
mod peers;
mod personas;

use clap::Parser;
use cli::*;
use flock_appliance::keys::{self};
use flock_appliance::webrtc::{PeerEvent, Peers};
use flock_appliance::{spawn, ApplianceConfig, Event, SessionNonce};
use flock_proto::Name;
use output::*;
use peers::*;
use personas::*;
use ring::signature::Ed25519KeyPair;
use std::io::{self};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One appliance to run.
struct Plan {
    config: ApplianceConfig,
    key: Ed25519KeyPair,
    personas: Option<Personas>,
}

/// Startup errors, with the exit status they deserve.
enum Fail {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .init(),
        Err(e) => return fail(Fail::Usage(format!("bad --log filter {:?}: {e}", args.log))),
    }
    let (plans, bind, peer_ip) = match prepare(&args) {
        Ok(p) => p,
        Err(f) => return fail(f),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(Fail::Runtime(format!("cannot start the runtime: {e}"))),
    };
    let webrtc = peer_ip.map(|ip| {
        Arc::new(Webrtc {
            ip,
            lifetime: Duration::from_secs(args.peer_lifetime),
            peers: Mutex::new(Peers::new(args.max_peers as usize)),
        })
    });
    runtime.block_on(run(&args, plans, bind, webrtc))
}

fn fail(f: Fail) -> ExitCode {
    match f {
        Fail::Usage(msg) => {
            eprintln!("flock-appliance: {msg}");
            ExitCode::from(2)
        }
        Fail::Runtime(msg) => {
            eprintln!("flock-appliance: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the arguments together and loads (or creates) the keys. Returns the appliances, the
/// address their sockets bind, and with --personas the IP of the log-ins' WebRTC peers.
fn prepare(args: &Args) -> Result<(Vec<Plan>, SocketAddr, Option<IpAddr>), Fail> {
    let bind = match args.bind {
        Some(b) => {
            if b.is_ipv4() != args.server.is_ipv4() && !(b.is_ipv6() && b.ip().is_unspecified()) {
                return Err(Fail::Usage(format!(
                    "--bind {} cannot reach the server {}",
                    b.ip(),
                    args.server
                )));
            }
            if b.port() != 0 && args.count > 1 {
                return Err(Fail::Usage(
                    "--bind with a port needs --count 1 (each appliance has its own socket)".into(),
                ));
            }
            b
        }
        None if args.server.is_ipv6() => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
    let peer_ip = match &args.personas {
        Some(_) => Some(peer_ip(args.server, bind).map_err(|e| {
            Fail::Runtime(format!(
                "cannot find this machine's address towards {}: {e}",
                args.server
            ))
        })?),
        None => None,
    };
    let names: Vec<Name> = if args.count == 1 {
        vec![args.name]
    } else {
        (0..args.count)
            .map(|i| {
                let full = format!("{}-{i}", args.name);
                full.parse::<Name>().map_err(|e| {
                    Fail::Usage(format!(
                        "--name is too long for --count {}: NAME-{i} would be {} bytes ({e})",
                        args.count,
                        full.len()
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut plans = Vec::with_capacity(names.len());
    for name in names {
        let path = args.key_dir.join(format!("{name}.key"));
        let (key, created) =
            keys::load_or_create(&path).map_err(|e| Fail::Runtime(e.to_string()))?;
        if created {
            tracing::info!("created {}", path.display());
        }
        let mut config = ApplianceConfig::new(name, args.server, args.flock_key.0);
        config.give_up_after = Duration::from_secs(args.give_up_after);
        config.login_memory = args.login_memory;
        plans.push(Plan {
            config,
            key,
            personas: args.personas.clone(),
        });
    }
    Ok((plans, bind, peer_ip))
}

/// What the appliance tasks tell the main loop.
enum Report {
    Started {
        index: usize,
        local: SocketAddr,
        identity: String,
    },
    Event {
        index: usize,
        event: Event,
    },
    Failed {
        index: usize,
        error: io::Error,
    },
    /// What a log-in's WebRTC peer did, or why the signalling could not be applied to it.
    Peer {
        index: usize,
        session: SessionNonce,
        event: Result<PeerEvent, String>,
    },
}

async fn run(
    args: &Args,
    plans: Vec<Plan>,
    bind: SocketAddr,
    webrtc: Option<Arc<Webrtc>>,
) -> ExitCode {
    let count = plans.len();
    let names: Vec<Name> = plans.iter().map(|p| p.config.name).collect();
    let (report_tx, mut reports) = mpsc::channel::<Report>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let step = if count > 1 {
        Duration::from_secs_f64(args.ramp_up / count as f64)
    } else {
        Duration::ZERO
    };
    let mut tasks = Vec::with_capacity(count);
    for (index, plan) in plans.into_iter().enumerate() {
        let delay = step * index as u32;
        tasks.push(tokio::spawn(appliance(
            index,
            plan,
            bind,
            delay,
            webrtc.clone(),
            report_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(report_tx);

    let mut out = Output { json: args.json };
    let mut registered = vec![false; count];
    let mut registered_count = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let status = loop {
        let report = tokio::select! {
            r = reports.recv() => r,
            _ = &mut ctrl_c => {
                tracing::info!("interrupted");
                break ExitCode::SUCCESS;
            }
        };
        let Some(report) = report else {
            break ExitCode::SUCCESS;
        };
        match report {
            Report::Started {
                index,
                local,
                identity,
            } => out.started(&names[index], local, &identity),
            Report::Failed { index, error } => {
                eprintln!(
                    "flock-appliance: {}: cannot open a socket on {bind}: {error}",
                    names[index]
                );
                break ExitCode::FAILURE;
            }
            Report::Peer {
                index,
                session,
                event,
            } => out.peer(&names[index], &session, &event),
            Report::Event { index, event } => {
                out.event(&names[index], &event);
                match event {
                    Event::Registered { .. } if !registered[index] => {
                        registered[index] = true;
                        registered_count += 1;
                        if args.exit_after_register && registered_count == count {
                            break ExitCode::SUCCESS;
                        }
                    }
                    Event::GaveUp | Event::Refused { .. } if args.exit_after_register => {
                        eprintln!("flock-appliance: {}: {event}", names[index]);
                        break ExitCode::FAILURE;
                    }
                    _ => {}
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    drop(reports); // nobody blocks on a full channel while stopping
    let all = futures_join(tasks);
    if tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .is_err()
    {
        tracing::warn!("some appliances did not stop in time");
    }
    status
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs one appliance: waits its turn, binds, forwards its events until told to stop.
async fn appliance(
    index: usize,
    plan: Plan,
    bind: SocketAddr,
    delay: Duration,
    webrtc: Option<Arc<Webrtc>>,
    reports: mpsc::Sender<Report>,
    mut stop: watch::Receiver<bool>,
) {
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
    let mut handle = match spawn(plan.config, plan.key, bind) {
        Ok(h) => h,
        Err(error) => {
            let _ = reports.send(Report::Failed { index, error }).await;
            return;
        }
    };
    if let Some(p) = plan.personas {
        let _ = handle.set_personas(p.list_json());
        let _ = handle.set_authenticator(move |r| p.decide(r.persona, r.credential));
    }
    let started = Report::Started {
        index,
        local: handle.local_addr(),
        identity: handle.fingerprint().to_hex(),
    };
    // The peers' events (from their threads), tagged with the session.
    let (peer_tx, mut peer_events) = mpsc::channel::<(SessionNonce, PeerEvent)>(64);
    if reports.send(started).await.is_ok() {
        loop {
            tokio::select! {
                event = handle.next_event() => match event {
                    Some(event) => {
                        let errors = match &webrtc {
                            Some(w) => w.signal(index, &handle, &event, &peer_tx).await,
                            None => vec![],
                        };
                        let session = event_session(&event);
                        if reports.send(Report::Event { index, event }).await.is_err() {
                            break;
                        }
                        for e in errors {
                            let Some(session) = session else { break };
                            let _ = reports.send(Report::Peer { index, session, event: Err(e) }).await;
                        }
                    }
                    None => break,
                },
                Some((session, event)) = peer_events.recv() => {
                    if let (PeerEvent::Stopped(_), Some(w)) = (&event, &webrtc) {
                        w.forget(index, &session);
                    }
                    let report = Report::Peer { index, session, event: Ok(event) };
                    if reports.send(report).await.is_err() {
                        break;
                    }
                }
                _ = stop.changed() => break,
            }
        }
    }
    handle.shutdown().await;
}

/// The session an event is about, if any.
fn event_session(event: &Event) -> Option<SessionNonce> {
    match event {
        Event::LoginAccepted { session, .. }
        | Event::LoginRefused { session, .. }
        | Event::RemoteAnswer { session, .. }
        | Event::RemoteCandidate { session, .. }
        | Event::RemoteEndOfCandidates { session }
        | Event::SessionDone { session }
        | Event::SessionFailed { session, .. } => Some(*session),
        _ => None,
    }
}
