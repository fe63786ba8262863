//! Integration tests of the runtime shell with real engines (redis-server, and valkey-server when
//! installed), without a coordinator: desired processes are handed to `RuntimeHandle::apply`.
//! Clients connect through the TLS front with a test CA made by rcgen.

mod fixtures;
mod t10_lifecycle;
mod t20_failures;
mod t30_replication;
mod t40_previous_agent;
