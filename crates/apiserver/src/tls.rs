//! TLS for the API server: its serving certificate, and client certificates signed by the
//! cluster CA as the identity of a request (CN = user, O = groups), as upstream's x509
//! authenticator reads them. A client without a certificate is anonymous. The configurations
//! and the identity reading are shared with the kubelet, in `r8s_cluster::tls`.

pub use r8s_cluster::tls::{Identity, server_config};
