//! `SshProber` against a real OpenSSH sshd (see `sshd_fixture`): one case per outcome.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;

use super::SshProber;
use super::sshd_fixture::{Sshd, free_port, generate_host_key};
use crate::probe::{ProbeOutcome, ProbeTarget, Prober, load_or_create_probe_key};

/// Generous for a loaded CI machine; the timeout case sets its own short one.
const TEST_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

fn target(port: u16, user: &str, pinned_host_key: Option<String>) -> ProbeTarget {
    ProbeTarget {
        host_id: "host-1".to_owned(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        user: user.to_owned(),
        pinned_host_key,
    }
}

fn prober(key: Arc<russh::keys::PrivateKey>) -> SshProber {
    SshProber::with_timeouts(key, TEST_PROBE_TIMEOUT, TEST_PROBE_TIMEOUT)
}

#[tokio::test]
async fn probe_with_pinned_host_key_is_reachable() {
    let Some(sshd) = Sshd::start().await else {
        return;
    };
    let prober = prober(sshd.restricted_key.clone());

    let pinned = target(sshd.port, &sshd.user, Some(sshd.host_public_key.clone()));
    let outcome = prober.probe(&pinned).await;
    assert!(outcome.is_reachable(), "{outcome}");

    // First contact: nothing pinned yet, any key accepted; fetch_host_key yields the pin.
    let unpinned = target(sshd.port, &sshd.user, None);
    let outcome = prober.probe(&unpinned).await;
    assert!(outcome.is_reachable(), "{outcome}");
    let fetched = prober
        .fetch_host_key(IpAddr::V4(Ipv4Addr::LOCALHOST), sshd.port)
        .await
        .unwrap();
    assert!(fetched.starts_with("ssh-ed25519 AAAA"), "{fetched}");
    let fetched = PublicKey::from_openssh(&fetched).unwrap();
    let expected = PublicKey::from_openssh(&sshd.host_public_key).unwrap();
    assert_eq!(fetched.key_data(), expected.key_data());
}

#[tokio::test]
async fn probe_with_other_pinned_key_is_host_key_mismatch() {
    let Some(sshd) = Sshd::start().await else {
        return;
    };
    let other = generate_host_key(&sshd.dir().join("other_host_key"));
    let prober = prober(sshd.restricted_key.clone());

    let outcome = prober
        .probe(&target(sshd.port, &sshd.user, Some(other.clone())))
        .await;
    eprintln!("outcome: {outcome}");
    let ProbeOutcome::HostKeyMismatch {
        expected,
        presented,
    } = &outcome
    else {
        panic!("expected HostKeyMismatch, got {outcome}");
    };
    assert_eq!(expected, &other);
    let presented = PublicKey::from_openssh(presented).unwrap();
    let real = PublicKey::from_openssh(&sshd.host_public_key).unwrap();
    assert_eq!(presented.key_data(), real.key_data());
    assert!(!outcome.is_reachable());
}

#[tokio::test]
async fn probe_of_closed_port_is_connect_failed() {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_probe_key(&dir.path().join("probe")).unwrap();
    let prober = prober(Arc::new(key));

    let outcome = prober.probe(&target(free_port(), "root", None)).await;
    eprintln!("outcome: {outcome}");
    assert!(
        matches!(outcome, ProbeOutcome::ConnectFailed(_)),
        "{outcome}"
    );
}

#[tokio::test]
async fn probe_of_silent_listener_times_out_in_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections, never saying a word.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_probe_key(&dir.path().join("probe")).unwrap();
    let prober = SshProber::with_timeouts(
        Arc::new(key),
        Duration::from_secs(5),
        Duration::from_millis(300),
    );

    let start = tokio::time::Instant::now();
    let outcome = prober.probe(&target(port, "root", None)).await;
    eprintln!("outcome: {outcome}");
    assert_eq!(outcome, ProbeOutcome::Timeout { stage: "handshake" });
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn probe_with_unknown_client_key_is_auth_failed() {
    let Some(sshd) = Sshd::start().await else {
        return;
    };
    let stranger = load_or_create_probe_key(&sshd.dir().join("stranger")).unwrap();
    let prober = prober(Arc::new(stranger));

    let outcome = prober
        .probe(&target(
            sshd.port,
            &sshd.user,
            Some(sshd.host_public_key.clone()),
        ))
        .await;
    eprintln!("outcome: {outcome}");
    assert!(matches!(outcome, ProbeOutcome::AuthFailed(_)), "{outcome}");
}

#[tokio::test]
async fn run_with_restricted_key_runs_the_forced_command() {
    let Some(sshd) = Sshd::start().await else {
        return;
    };
    let prober = prober(sshd.restricted_key.clone());
    let host = target(sshd.port, &sshd.user, Some(sshd.host_public_key.clone()));

    // `command="true"` replaces whatever we ask for: no output, exit 0.
    let stdout = prober.run(&host, "echo hi").await.unwrap();
    assert_eq!(stdout, "");
    let stdout = prober.run(&host, "exit 3").await.unwrap();
    assert_eq!(stdout, "");
}

#[tokio::test]
async fn run_with_open_key_returns_stdout_or_the_failure() {
    let Some(sshd) = Sshd::start().await else {
        return;
    };
    let prober = prober(sshd.open_key.clone());
    let host = target(sshd.port, &sshd.user, Some(sshd.host_public_key.clone()));

    assert_eq!(prober.run(&host, "echo hi").await.unwrap(), "hi");

    let failed = prober
        .run(&host, "echo oops >&2; exit 3")
        .await
        .unwrap_err();
    assert_eq!(
        failed,
        ProbeOutcome::CommandFailed {
            exit_status: Some(3),
            message: "oops".to_owned(),
        }
    );

    // Output past the bound is read and dropped, not buffered.
    let big = prober.run(&host, "head -c 200000 /dev/zero").await.unwrap();
    assert_eq!(big.len(), 64 * 1024);
}

#[tokio::test]
async fn unreadable_pinned_key_fails_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_probe_key(&dir.path().join("probe")).unwrap();
    let prober = prober(Arc::new(key));

    let outcome = prober
        .probe(&target(
            free_port(),
            "root",
            Some("ssh-ed25519 not-base64".to_owned()),
        ))
        .await;
    assert!(
        matches!(&outcome, ProbeOutcome::HandshakeFailed(message) if message.contains("pinned")),
        "{outcome}"
    );
}
