//! Patroni + etcd + HAProxy on loopback (filled in below).
