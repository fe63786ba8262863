//! Names of the gRPC metadata headers and certificate roles that every party must agree on.

/// Bearer token header (admin token for Admin/Config, join token for Agent/Register).
pub const AUTHORIZATION: &str = "authorization";
/// Set by a non-leader coordinator on an UNAVAILABLE reply: where the leader is.
pub const LEADER_ENDPOINT: &str = "kvs-leader";

/// Certificate common-name prefix of an agent's host certificate: `agent:<host-id>`.
pub const AGENT_CN_PREFIX: &str = "agent:";
/// Certificate common-name prefix of a coordinator node's certificate: `coordinator:<node-id>`.
pub const COORDINATOR_CN_PREFIX: &str = "coordinator:";

/// The ACL user customers authenticate as.
pub const CUSTOMER_USER: &str = "default";
/// The ACL user the agent uses for INFO, health checks and reconfiguration.
pub const ADMIN_USER: &str = "kvs-admin";
/// The ACL user replication uses.
pub const REPLICATION_USER: &str = "kvs-replication";
