//! `kvs cluster status|add|remove`: the coordinator cluster's membership, for operators.

use kvs_proto::pb;
use serde_json::json;

use super::Context;
use crate::cli::ClusterCommand;
use crate::connect::request;
use crate::output;

pub async fn run(ctx: &Context, command: ClusterCommand) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let status = match command {
        ClusterCommand::Status => {
            client
                .call(
                    client
                        .admin()
                        .cluster_status(request(pb::ClusterStatusRequest {})),
                )
                .await?
        }
        ClusterCommand::Add(args) => {
            if !ctx.json {
                eprintln!(
                    "Adding node {} ({}) as a learner; it becomes a voter once it caught up...",
                    args.node_id, args.raft_addr
                );
            }
            let add = pb::AddNodeRequest {
                node_id: args.node_id,
                raft_addr: args.raft_addr,
                api_addr: args.api_addr,
            };
            // Catching up may take longer than the default deadline; the server bounds it.
            let mut admin = client.admin();
            admin
                .add_node(request(add))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| client.status_error(&status))?
        }
        ClusterCommand::Remove(args) => {
            let remove = pb::RemoveNodeRequest {
                node_id: args.node_id,
            };
            client
                .call(client.admin().remove_node(request(remove)))
                .await?
        }
    };
    if ctx.json {
        return output::print_json(&status_json(&status));
    }
    print!("{}", status_text(&status));
    Ok(())
}

fn status_json(status: &pb::ClusterStatusResponse) -> serde_json::Value {
    json!({
        "cluster_id": status.cluster_id,
        "leader_id": status.leader_id,
        "term": status.term,
        "last_log_index": status.last_log_index,
        "last_applied_index": status.last_applied_index,
        "answered_by": status.answered_by,
        "nodes": status.nodes.iter().map(|n| json!({
            "id": n.id,
            "raft_addr": n.raft_addr,
            "api_addr": n.api_addr,
            "role": n.role,
            "leader": n.leader,
            "matched_index": n.matched_index,
            "lag": n.lag,
        })).collect::<Vec<_>>(),
    })
}

/// The `kvs cluster status` text: a header, then one row per node.
pub fn status_text(status: &pb::ClusterStatusResponse) -> String {
    let leader = if status.leader_id == 0 {
        "none".to_string()
    } else {
        status.leader_id.to_string()
    };
    let mut text = format!(
        "=== cluster {}\nLeader: {leader}   Term: {}   Last log index: {}   Applied: {}\n\n",
        status.cluster_id, status.term, status.last_log_index, status.last_applied_index
    );
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                format!("{}{}", n.role, if n.leader { " (leader)" } else { "" }),
                n.raft_addr.clone(),
                if n.api_addr.is_empty() {
                    "-".into()
                } else {
                    n.api_addr.clone()
                },
                n.matched_index.to_string(),
                n.lag.to_string(),
            ]
        })
        .collect();
    text.push_str(&output::table(
        &["ID", "ROLE", "RAFT", "API", "MATCHED", "LAG"],
        &rows,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_the_leader_and_lag() {
        let status = pb::ClusterStatusResponse {
            cluster_id: "prod".into(),
            leader_id: 1,
            term: 3,
            last_log_index: 10,
            last_applied_index: 10,
            nodes: vec![
                pb::ClusterNode {
                    id: 1,
                    raft_addr: "a:7500".into(),
                    api_addr: "a:7400".into(),
                    role: "voter".into(),
                    leader: true,
                    matched_index: 10,
                    lag: 0,
                },
                pb::ClusterNode {
                    id: 2,
                    raft_addr: "b:7500".into(),
                    api_addr: String::new(),
                    role: "learner".into(),
                    leader: false,
                    matched_index: 7,
                    lag: 3,
                },
            ],
            answered_by: 1,
        };
        let text = status_text(&status);
        assert!(text.contains("Leader: 1   Term: 3"), "{text}");
        assert!(text.contains("voter (leader)"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("2 ")
                && l.contains("learner")
                && l.trim_end().ends_with('3')),
            "{text}"
        );
    }
}
