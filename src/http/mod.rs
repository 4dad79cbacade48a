//! General HTTP helpers that any application uses, whatever its resource: conditional
//! requests, ETags and cursors ([`conditional`]), reading request cookies ([`cookie`]), and
//! answering a request before the service behind does ([`admit`]).

pub mod admit;
pub mod conditional;
pub mod cookie;
