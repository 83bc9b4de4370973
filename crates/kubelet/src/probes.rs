//! Liveness, readiness and startup probes (exec through CRI, httpGet, tcpSocket, grpc), run on
//! the pod worker's ticks with upstream's timing and thresholds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cri::{Cri, v1};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// One probe's record for one container instance.
#[derive(Debug, Default)]
struct Record {
    successes: i32,
    failures: i32,
    last: Option<Instant>,
    result: Option<bool>,
}

/// Every probe of one pod, keyed by container id so a restarted container starts afresh.
#[derive(Default)]
pub struct Probes {
    records: HashMap<(String, Kind), Record>,
}

pub enum Outcome {
    Success,
    Failure(String),
}

fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

pub async fn run_handler(
    cri: &Cri,
    container: &Container,
    id: &str,
    probe: &Probe,
    pod_ip: &str,
) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let request = v1::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: exec.command.clone().unwrap_or_default(),
            timeout: timeout.as_secs() as i64,
        };
        return match cri.runtime.clone().exec_sync(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                if answer.exit_code == 0 {
                    Outcome::Success
                } else {
                    let output = String::from_utf8_lossy(&answer.stdout).into_owned()
                        + &String::from_utf8_lossy(&answer.stderr);
                    Outcome::Failure(format!(
                        "command {:?} exited with {}: {}",
                        exec.command.clone().unwrap_or_default(),
                        answer.exit_code,
                        output.trim()
                    ))
                }
            }
            Err(e) => Outcome::Failure(format!("exec failed: {}", e.message())),
        };
    }
    if let Some(http) = &probe.http_get {
        let Some(port) = port(container, &http.port) else {
            return Outcome::Failure(format!("unknown port {:?}", http.port));
        };
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let scheme = http
            .scheme
            .clone()
            .unwrap_or_else(|| "HTTP".into())
            .to_lowercase();
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        return match tokio::time::timeout(
            timeout,
            http_get(
                &host,
                port,
                &path,
                http.http_headers.as_deref().unwrap_or_default(),
            ),
        )
        .await
        {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
            Err(_) => Outcome::Failure(format!("Get \"{url}\": context deadline exceeded")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(container, &tcp.port) else {
            return Outcome::Failure(format!("unknown port {:?}", tcp.port));
        };
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(grpc) = &probe.grpc {
        let Ok(port) = u16::try_from(grpc.port) else {
            return Outcome::Failure(format!("invalid port {}", grpc.port));
        };
        return grpc_check(pod_ip, port, grpc.service.as_deref().unwrap_or(""), timeout).await;
    }
    Outcome::Failure("the probe has no handler".into())
}

pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// One `grpc.health.v1.Health/Check` call over plain HTTP/2, answered as upstream's gRPC prober
/// words its results.
async fn grpc_check(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    use health::health_check_response::ServingStatus;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let seconds = timeout.as_secs();
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
    else {
        return Outcome::Failure(format!("invalid address {authority:?}"));
    };
    let endpoint = endpoint.connect_timeout(timeout).timeout(timeout);
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(_)) | Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {authority:?} within {seconds}s"
            ));
        }
    };
    let mut client = health::health_client::HealthClient::new(channel);
    let request = health::HealthCheckRequest {
        service: service.to_owned(),
    };
    let answer = tokio::time::timeout(timeout, client.check(request)).await;
    match answer {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {seconds}s"
        )),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Outcome::Failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            ))
        }
        Ok(Err(status)) => Outcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )),
        Ok(Ok(response)) => match ServingStatus::try_from(response.into_inner().status) {
            Ok(ServingStatus::Serving) => Outcome::Success,
            Ok(other) => Outcome::Failure(format!(
                "service unhealthy (responded with {:?})",
                other.as_str_name()
            )),
            Err(_) => {
                Outcome::Failure("service unhealthy (responded with an unknown status)".into())
            }
        },
    }
}

/// A plain HTTP/1.1 GET; only the status code matters to a probe.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[k8s_openapi::api::core::v1::HTTPHeader],
) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for header in headers {
        request.push_str(&format!("{}: {}\r\n", header.name, header.value));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

impl Probes {
    /// Runs the probe if due and returns its current result: `None` until it has a verdict
    /// (within initialDelaySeconds), else whether it passes by its thresholds.
    #[allow(clippy::too_many_arguments)]
    pub async fn check(
        &mut self,
        cri: &Cri,
        container: &Container,
        id: &str,
        started_at: Instant,
        kind: Kind,
        probe: &Probe,
        pod_ip: &str,
    ) -> (Option<bool>, Option<String>) {
        let record = self.records.entry((id.to_string(), kind)).or_default();
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        if started_at.elapsed() < delay {
            return (record.result, None);
        }
        if record.last.is_some_and(|last| last.elapsed() < period) {
            return (record.result, None);
        }
        record.last = Some(Instant::now());
        let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
        let outcome = run_handler(cri, container, id, probe, pod_ip).await;
        let mut failure = None;
        match outcome {
            Outcome::Success => {
                record.successes += 1;
                record.failures = 0;
                if record.successes >= success_threshold {
                    record.result = Some(true);
                }
            }
            Outcome::Failure(message) => {
                record.failures += 1;
                record.successes = 0;
                if record.failures >= failure_threshold {
                    record.result = Some(false);
                }
                failure = Some(message);
            }
        }
        (record.result, failure)
    }

    /// Forgets the records of containers no longer running.
    pub fn retain(&mut self, live: &[String]) {
        self.records.retain(|(id, _), _| live.contains(id));
    }

    /// Forgets a container's failed liveness record once it has been restarted for it.
    pub fn forget(&mut self, id: &str) {
        self.records.retain(|(i, _), _| i != id);
    }
}

impl Probes {
    /// The current verdict of a probe, without running it.
    pub fn result(&self, id: &str, kind: Kind) -> Option<bool> {
        self.records
            .get(&(id.to_string(), kind))
            .and_then(|r| r.result)
    }
}

#[cfg(test)]
mod tests {
    use super::health::health_check_response::ServingStatus;
    use super::health::health_server::{Health, HealthServer};
    use super::health::{HealthCheckRequest, HealthCheckResponse};
    use super::*;

    /// Serving for "", not serving for anything else.
    struct OnlyDefault;

    #[tonic::async_trait]
    impl Health for OnlyDefault {
        async fn check(
            &self,
            request: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
            let status = if request.into_inner().service.is_empty() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            Ok(tonic::Response::new(HealthCheckResponse {
                status: status as i32,
            }))
        }
    }

    async fn health_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::new(OnlyDefault))
                .serve_with_incoming(incoming),
        );
        port
    }

    #[tokio::test]
    async fn grpc_probes_ask_the_health_service() {
        let port = health_server().await;
        let second = Duration::from_secs(1);
        assert!(matches!(
            grpc_check("127.0.0.1", port, "", second).await,
            Outcome::Success
        ));
        let Outcome::Failure(why) = grpc_check("127.0.0.1", port, "db", second).await else {
            panic!("a service not serving passed");
        };
        assert_eq!(why, "service unhealthy (responded with \"NOT_SERVING\")");
        // Nothing listens on the port the listener had.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let Outcome::Failure(why) = grpc_check("127.0.0.1", closed_port, "", second).await else {
            panic!("a closed port passed");
        };
        assert!(
            why.starts_with("timeout: failed to connect service"),
            "{why}"
        );
    }
}
