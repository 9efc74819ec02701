//! A client connection on the shard that owns its routing_id, from the hand-off to
//! the close (§4). No socket below `socket.rs`:
//!
//! - [`outbound`]: ordered reply slots, pushes, the connect-time backlog, the bound
//!   of §4.9.
//! - [`registry`]: what opening and closing a session registers and removes.
//! - [`requests`]: the request pipeline of §3.6.
//! - [`connection`]: the connection's state machine: phases, its timer, when to
//!   read, write and end (§2.6, §2.7, §4.10), with the time passed in.
//! - [`socket`]: the task that moves bytes between the socket and the connection.

pub mod connection;
pub mod outbound;
pub mod registry;
pub mod requests;
pub mod socket;
