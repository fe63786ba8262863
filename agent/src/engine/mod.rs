//! Everything the agent knows about engine binaries (`valkey-server`, `redis-server`).
//!
//! ```text
//!   catalog  which binaries this host has, their versions and labels (valkey-9, redis-7)
//!   render   DesiredProcess ──► engine.conf + users.acl (and the CONFIG SET for live changes)
//!   process  spawn / watch / stop one engine process (process group, pid file, engine.log)
//!   leftover find an engine a previous agent left running; adopt (watch) or stop it
//!   resp     a minimal RESP2 client (AUTH, INFO, CONFIG SET) for the agent's admin user
//!   info     INFO text ──► the metrics the agent reports
//! ```

pub mod catalog;
pub mod info;
pub mod leftover;
pub mod process;
pub mod render;
pub mod resp;
