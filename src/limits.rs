//! Every fixed bound and timeout of the relay, with the reason for its value.
//! Configurable limits live in `config`; these are the ones PROTOCOL.md fixes or
//! leaves to the implementation.
