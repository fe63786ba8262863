//! Test fixture: a real OpenSSH `sshd` on 127.0.0.1, configured from scratch in a temp dir.
//!
//! ```text
//!   <tmp>/host_key{,.pub}        the server's ed25519 host key (ssh-keygen)
//!   <tmp>/probe_restricted{,.pub} client key authorized as `restrict,command="true"`
//!   <tmp>/probe_open{,.pub}      client key authorized without restriction
//!   <tmp>/authorized_keys, sshd_config, sshd.log, sshd.pid
//! ```
//!
//! The daemon is killed by its PID when the fixture drops (a failing test included); its log is
//! printed when the test panics.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use tempfile::TempDir;

use crate::probe::key::public_key_path;
use crate::probe::load_or_create_probe_key;

/// Where Debian's openssh-server puts the daemon (sshd insists on an absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running sshd and the keys that go with it.
pub struct Sshd {
    /// The port sshd listens on (127.0.0.1).
    pub port: u16,
    /// The user the client keys are authorized for (the current user).
    pub user: String,
    /// The server's host key, as an OpenSSH public key line (with its comment).
    pub host_public_key: String,
    /// Authorized as `restrict,command="true"`: whatever it asks, it runs `true`.
    pub restricted_key: Arc<PrivateKey>,
    /// Authorized without restriction.
    pub open_key: Arc<PrivateKey>,
    /// The sshd process; killed by PID on drop.
    child: Child,
    log_path: PathBuf,
    /// Keeps the temp dir alive as long as sshd runs.
    dir: TempDir,
}

impl Sshd {
    /// Starts sshd, or returns `None` (after saying so) if it is not installed.
    pub async fn start() -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            kvs_test_support::skip(&format!(
                "{SSHD} is not installed (apt-get install -y openssh-server); the SSH probe \
                 tests need a real sshd"
            ));
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        let host_public_key = generate_host_key(&path("host_key"));
        let restricted_key = load_or_create_probe_key(&path("probe_restricted")).expect("key");
        let open_key = load_or_create_probe_key(&path("probe_open")).expect("key");
        let restricted_line = fs::read_to_string(public_key_path(&path("probe_restricted")))
            .expect("restricted .pub");
        let open_line =
            fs::read_to_string(public_key_path(&path("probe_open"))).expect("open .pub");
        fs::write(
            path("authorized_keys"),
            format!("restrict,command=\"true\" {restricted_line}{open_line}"),
        )
        .expect("authorized_keys");

        let user = current_user();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n\
             AuthorizedKeysFile {authorized_keys}\nPidFile {pid}\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nPrintMotd no\nLogLevel VERBOSE\n",
            host_key = path("host_key").display(),
            authorized_keys = path("authorized_keys").display(),
            pid = path("sshd.pid").display(),
        );
        fs::write(path("sshd_config"), config).expect("sshd_config");
        // Privilege separation directory; sshd refuses to start without it. Creating it needs
        // root; an existing one is used as it is.
        if !Path::new("/run/sshd").is_dir() {
            if let Err(err) = fs::create_dir_all("/run/sshd") {
                kvs_test_support::skip(&format!("sshd's /run/sshd cannot be created ({err})"));
                return None;
            }
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).expect("chmod");
        }

        let log_path = path("sshd.log");
        let log = fs::File::create(&log_path).expect("sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let mut sshd = Sshd {
            port,
            user,
            host_public_key,
            restricted_key: Arc::new(restricted_key),
            open_key: Arc::new(open_key),
            child,
            log_path,
            dir,
        };
        sshd.wait_until_listening().await;
        Some(sshd)
    }

    /// The temp dir sshd runs from (for extra keys).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn wait_until_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait sshd") {
                panic!("sshd exited at startup with {status}:\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sshd did not listen on port {} within {STARTUP_TIMEOUT:?}:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID (SIGKILL); never a broad pkill.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- sshd log ({}):\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// `ssh-keygen -t ed25519 -N '' -f path`; returns the `.pub` line, trimmed.
pub fn generate_host_key(path: &Path) -> String {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed: {status}");
    fs::read_to_string(public_key_path(path))
        .expect("host key .pub")
        .trim()
        .to_owned()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local_addr").port()
}

/// The login the probe keys are authorized for. As root: a uid-0 alias whose shell is /bin/sh,
/// created once if missing (no password, home /), because sshd runs every command through
/// the user's login shell and root's bash sources ~/.bashrc for ssh sessions: a slow or hanging
/// ~/.bashrc (seen here: a stale pyenv rehash lock) made every probe time out. As another user:
/// that user.
fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(output.status.success(), "id -un failed");
    let user = String::from_utf8(output.stdout)
        .expect("utf-8 user name")
        .trim()
        .to_owned();
    if user != "root" {
        return user;
    }
    let exists = Command::new("getent")
        .args(["passwd", PROBE_TEST_USER])
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let created = Command::new("useradd")
            .args([
                "-o",
                "-u",
                "0",
                "-g",
                "0",
                "-M",
                "-d",
                "/",
                "-s",
                "/bin/sh",
                // No password login, but not "locked" ("!"), which sshd refuses outright.
                "-p",
                "*",
                PROBE_TEST_USER,
            ])
            .status();
        assert!(
            created.is_ok_and(|s| s.success()),
            "useradd {PROBE_TEST_USER} failed"
        );
    }
    // An older fixture may have created it locked; sshd refuses locked accounts.
    let unlocked = Command::new("usermod")
        .args(["-p", "*", "-d", "/", PROBE_TEST_USER])
        .status();
    assert!(
        unlocked.is_ok_and(|s| s.success()),
        "usermod {PROBE_TEST_USER} failed"
    );
    PROBE_TEST_USER.to_owned()
}

/// See [`current_user`].
pub const PROBE_TEST_USER: &str = "kvs-test-ssh";
