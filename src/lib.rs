//! pgbridge: an asynchronous WSGI-shaped application contract, served on axum, with
//! non-blocking Postgres.

pub mod awsgi;
