//! The Config gRPC service: streams an app's config vars, at once and after every change, for
//! `kvs run` (which restarts its command when REDIS_URL rotates) and `kvs config`.

use std::pin::Pin;

use futures::Stream;
use kvs_proto::pb::config_server::Config;
use kvs_proto::{ApiError, names, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::SharedRef;

pub struct ConfigService {
    pub shared: SharedRef,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigVars, Status>> + Send>>;

#[tonic::async_trait]
impl Config for ConfigService {
    type WatchConfigStream = WatchStream;

    async fn watch_config(
        &self,
        request: Request<pb::AppRef>,
    ) -> Result<Response<Self::WatchConfigStream>, Status> {
        let app = names::validate_app(&request.into_inner().app)?;
        if self.shared.read(|s| s.config_vars(&app)).is_none() {
            return Err(ApiError::NotFound(format!("app {app} has no instances attached")).into());
        }
        let (tx, rx) = mpsc::channel(2);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut changes = shared.state.subscribe();
            let mut last: Option<pb::ConfigVars> = None;
            loop {
                let current = shared.read(|s| s.config_vars(&app)).unwrap_or_default();
                let vars = pb::ConfigVars {
                    app: app.clone(),
                    version: current.0,
                    vars: current.1.into_iter().collect(),
                };
                if last.as_ref() != Some(&vars) {
                    if tx.send(Ok(vars.clone())).await.is_err() {
                        break;
                    }
                    last = Some(vars);
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    _ = tx.closed() => break,
                    _ = shared.stopping.cancelled() => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
