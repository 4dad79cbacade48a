//! General HTTP helpers that any application uses, whatever its resource: reading request
//! cookies ([`cookie`]).

pub mod cookie;
