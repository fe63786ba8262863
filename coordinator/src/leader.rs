//! The leader's loop: every `reconcile_interval` (and at once when a report changes a decision
//! input, or when a suspect host's confirmation window ends), compare what the agents and probes
//! report with the replicated state and act: instance status changes, the high-availability decisions of
//! `control::failover` (promote, complete, place standbys, switchovers), agent restarts over SSH.
//! Followers run the loop idle. A node that becomes leader starts its observations from scratch,
//! so it waits a whole confirmation window before it may fail anything over (DESIGN.md §3).
//!
//! ```text
//!   tick ─► leader? ─no─► (idle; reset memory so a later leadership starts fresh)
//!            └─yes─► publish own addresses
//!                    reconcile::decide ─► commit status changes
//!                    detector::assess ─► failover::plan ─► Commit · RestartAgent (SSH) · Alert
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use crate::control::{
    Evidence, HaAction, HaMemory, ProbeObservations, detector, failover, reconcile,
};
use crate::probe::ProbeTarget;
use crate::service::{Shared, SharedRef};
use crate::state::Command;

/// A tick for a window's end comes this long after it (the window must have fully elapsed).
const WINDOW_END_MARGIN: Duration = Duration::from_millis(1);
/// How long an early tick (woken by a changed report) waits to batch further reports.
const EARLY_TICK_DELAY: Duration = Duration::from_millis(5);

/// The remote command that restarts a host's agent (the host's forced SSH command dispatches on it).
pub const RESTART_AGENT_COMMAND: &str = "restart-agent";

pub async fn run(shared: SharedRef, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(shared.config.reconcile_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    // Leader time at which a suspect host's confirmation window ends (tick then, not up to a
    // reconcile interval later).
    let mut window_end: Option<Duration> = None;
    loop {
        let until_window_end = window_end.map(|at| at.saturating_sub(shared.clock.now()));
        tokio::select! {
            _ = interval.tick() => {}
            _ = shared.tick_now.notified() => {
                // Batch a burst of reports into one tick.
                tokio::time::sleep(EARLY_TICK_DELAY).await;
            }
            _ = sleep_opt(until_window_end.map(|d| d + WINDOW_END_MARGIN)) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let now_leader = shared.raft.current_leader().await == Some(shared.config.node_id);
        if now_leader && !leading {
            tracing::info!("this node leads: observations start from scratch");
            reset_memory(&shared);
        }
        leading = now_leader;
        if !leading {
            continue;
        }
        publish_own_addresses(&shared).await;
        window_end = tick(&shared).await;
    }
}

async fn sleep_opt(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

fn reset_memory(shared: &Shared) {
    shared.observe(|o| *o = Default::default());
    *shared
        .probes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = ProbeObservations::default();
    *shared
        .ha_memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = HaMemory::default();
}

/// One leader tick; returns when the next suspect host's confirmation window ends, if any.
async fn tick(shared: &SharedRef) -> Option<Duration> {
    let now = shared.clock.now();
    let now_ms = shared.clock.now_ms();
    let observations = shared.observe(|o| o.clone());
    let probes = shared
        .probes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let vantage_points = vantage_points(shared, &probes, now);
    let silence = shared.config.agent_silence_timeout;
    let (mut commands, actions, window_end) = shared.read(|state| {
        let commands = reconcile::decide(state, &observations, now, now_ms, silence);
        let evidence = Evidence {
            state,
            observations: &observations,
            probes: &probes,
            vantage_points: &vantage_points,
        };
        let verdicts = detector::assess(&evidence, now, &shared.ha);
        let window_end = detector::next_window_end(&verdicts, now, &shared.ha);
        let mut memory = shared
            .ha_memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let actions = failover::plan(
            state,
            &observations,
            &verdicts,
            &mut memory,
            now,
            now_ms,
            &shared.ha,
        );
        (commands, actions, window_end)
    });
    for action in actions {
        match action {
            HaAction::Commit(command) => commands.push(command),
            HaAction::RestartAgent { host_id } => restart_agent(shared, host_id),
            HaAction::Alert(message) => tracing::warn!(alert = %message, "high availability"),
        }
    }
    for command in commands {
        let description = describe(&command);
        match shared.submit(command).await {
            Ok(_) => tracing::info!(command = %description, "committed"),
            Err(e) => {
                tracing::debug!(command = %description, cause = %e, "not committed (the state moved)")
            }
        }
    }
    window_end
}

/// The coordinator nodes whose probes count: this node, and every node whose probe report
/// reached the leader within three probe intervals. A node that is down or cut off does not
/// report; requiring it would block every failover in a zone outage, so it is left out, and the
/// decision rests on the vantage points that can still see (at least the leader itself).
fn vantage_points(shared: &Shared, probes: &ProbeObservations, now: Duration) -> BTreeSet<u64> {
    let fresh = shared.config.probe_interval * 3;
    let mut points: BTreeSet<u64> = probes
        .hosts
        .values()
        .flat_map(|by_vantage| by_vantage.iter())
        .filter(|(_, p)| now.saturating_sub(p.last_result_at) <= fresh)
        .map(|(vantage, _)| *vantage)
        .collect();
    points.insert(shared.config.node_id);
    points
}

fn restart_agent(shared: &SharedRef, host_id: String) {
    let Some(target) = shared.read(|s| {
        let h = s.hosts.get(&host_id)?;
        Some(ProbeTarget {
            host_id: h.id.clone(),
            address: h.address,
            port: shared.config.probe_port,
            user: shared.config.probe_user.clone(),
            pinned_host_key: Some(h.ssh_host_key.clone()?),
        })
    }) else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        tracing::warn!(host = %host_id, "agent silent but host reachable: restarting the agent over SSH");
        let at_ms = shared.clock.now_ms();
        let message = match shared
            .restart_prober
            .run(&target, RESTART_AGENT_COMMAND)
            .await
        {
            Ok(_) => format!("agent on host {host_id} was silent; restarted it over SSH"),
            Err(outcome) => {
                format!("agent on host {host_id} was silent; restart over SSH failed: {outcome}")
            }
        };
        tracing::info!(host = %host_id, "{message}");
        let instances: Vec<String> = shared.read(|s| {
            s.instances
                .values()
                .filter(|i| {
                    i.primary.host_id == host_id || i.standbys.iter().any(|p| p.host_id == host_id)
                })
                .map(|i| i.name.clone())
                .collect()
        });
        for name in instances {
            let event = Command::RecordEvent {
                name,
                at_ms,
                message: message.clone(),
            };
            let _ = shared.submit(event).await;
        }
    });
}

fn describe(command: &Command) -> String {
    let text = format!("{command:?}");
    // Commands carrying instances hold passwords only inside `Credentials`, whose Debug is
    // redacted; cut long ones for the log.
    if text.len() > 400 {
        format!("{}…", &text[..text.floor_char_boundary(400)])
    } else {
        text
    }
}

/// The leader keeps its own entry in the coordinator directory current (joined nodes are
/// recorded by AddNode; the bootstrap node and a node whose addresses changed are recorded here).
async fn publish_own_addresses(shared: &Shared) {
    let me = crate::state::CoordinatorNode {
        id: shared.config.node_id,
        raft_addr: shared.config.raft_addr().to_string(),
        api_addr: shared.config.api_addr().to_string(),
    };
    if shared.read(|s| s.coordinators.get(&me.id) == Some(&me)) {
        return;
    }
    if let Err(e) = shared.submit(Command::SetCoordinator(me)).await {
        tracing::warn!(cause = %e, "cannot record this node's addresses");
    }
}
