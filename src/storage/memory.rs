//! The volatile `memory` backend (§10.1): committed = visible; lost at exit.
