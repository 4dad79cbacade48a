//! General HTTP helpers that any application uses, whatever its resource: conditional
//! requests, ETags and cursors ([`conditional`]), and reading request cookies ([`cookie`]).

pub mod conditional;
pub mod cookie;
