//! A client connection on the shard that owns its routing_id, from the hand-off to
//! the close (§4): its outbound side ([`outbound`]: ordered reply slots, pushes,
//! the connect-time backlog, the bound of §4.9, no runtime), the request pipeline
//! of §3.6 ([`requests`]) and the socket loop ([`socket`]).

pub mod outbound;
pub mod requests;
pub mod socket;
