//! The coordinators' SSH prober in the simulation: the REAL `Prober` trait the detector and the
//! agent-restart path call, over simulated TCP to the simulated sshd (`hosts.rs`): a banner within
//! the deadline means reachable; `run` sends the command and waits for its answer.

use std::net::SocketAddr;
use std::time::Duration;

use kvs_coordinator::probe::{ProbeOutcome, ProbeTarget, Prober};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub struct SimProber {
    /// Deadline of the whole probe (connect and banner).
    pub timeout: Duration,
}

impl SimProber {
    async fn banner(
        &self,
        target: &ProbeTarget,
    ) -> Result<
        (
            tokio::io::Lines<BufReader<turmoil::net::tcp::OwnedReadHalf>>,
            turmoil::net::tcp::OwnedWriteHalf,
        ),
        ProbeOutcome,
    > {
        let address = SocketAddr::new(target.address, target.port);
        let stream =
            match tokio::time::timeout(self.timeout, turmoil::net::TcpStream::connect(address))
                .await
            {
                Err(_) => return Err(ProbeOutcome::Timeout { stage: "connect" }),
                Ok(Err(error)) => return Err(ProbeOutcome::ConnectFailed(error.to_string())),
                Ok(Ok(stream)) => stream,
            };
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        match tokio::time::timeout(self.timeout, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with("SSH-2.0") => Ok((lines, write)),
            Ok(_) => Err(ProbeOutcome::HandshakeFailed("no SSH banner".into())),
            Err(_) => Err(ProbeOutcome::Timeout { stage: "handshake" }),
        }
    }
}

#[tonic::async_trait]
impl Prober for SimProber {
    async fn probe(&self, target: &ProbeTarget) -> ProbeOutcome {
        let started = tokio::time::Instant::now();
        match self.banner(target).await {
            Ok(_) => ProbeOutcome::Reachable {
                elapsed: started.elapsed(),
            },
            Err(outcome) => outcome,
        }
    }

    async fn run(&self, target: &ProbeTarget, command: &str) -> Result<String, ProbeOutcome> {
        let (mut lines, mut write) = self.banner(target).await?;
        let command = if command.contains("restart") {
            "restart-agent"
        } else {
            command
        };
        write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| ProbeOutcome::ConnectFailed(e.to_string()))?;
        match tokio::time::timeout(self.timeout, lines.next_line()).await {
            Ok(Ok(Some(answer))) => Ok(answer),
            _ => Err(ProbeOutcome::Timeout { stage: "command" }),
        }
    }
}
