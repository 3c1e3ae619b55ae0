//! Proxies that split traffic between stable and canary servers:
//! HAProxy (runtime API), Envoy (admin API runtime), NGINX (upstream file + reload).

pub mod envoy;
pub mod haproxy;
pub mod nginx;
