//! Upgraded HTTP streams, what `kubectl exec`, `attach`, `cp` and `port-forward` ride on, as
//! upstream's `httpstream` and `apiserver/pkg/util/proxy` packages serve them:
//!
//! - [`upgrade`]: the upgrade-aware proxy both hops use (apiserver → kubelet, kubelet →
//!   container runtime), joining the client's upgraded connection to the backend's.
//! - [`spdy`]: SPDY/3.1 framing and a connection's two halves.
//! - [`websocket`]: the server side of a WebSocket handshake inside a hyper handler.
//! - [`remotecommand`]: exec/attach over WebSocket `v5.channel.k8s.io` translated to SPDY.
//! - [`tunnel`]: port-forward's SPDY tunnelled through WebSocket messages.
//!
//! Only protocol code lives here: no API objects, no authorization, no knowledge of pods. The
//! caller says where the backend is and how to dial it. Node-side and control-plane crates both
//! use this one, so it depends on no other r8s crate.

pub mod remotecommand;
pub mod spdy;
#[cfg(test)]
mod testing;
pub mod tunnel;
pub mod upgrade;
pub mod websocket;

pub use upgrade::{Body, Connect, ProxyError, Target, Transport};
