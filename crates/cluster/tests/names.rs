//! `ServingNames::for_apiserver`: the names upstream's apiserver certificate covers.

use std::net::IpAddr;

use r8s_cluster::ServingNames;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn apiserver_names_are_loopback_given_ips_and_first_service_ip() {
    let names =
        ServingNames::for_apiserver(&[ip("192.0.2.10"), ip("2001:db8::1")], ip("10.96.0.1"));
    assert_eq!(
        names.ips,
        [
            ip("127.0.0.1"),
            ip("192.0.2.10"),
            ip("2001:db8::1"),
            ip("10.96.0.1")
        ]
    );
}

#[test]
fn apiserver_names_skip_wildcards_and_duplicates() {
    let names = ServingNames::for_apiserver(
        &[ip("0.0.0.0"), ip("::"), ip("127.0.0.1"), ip("10.96.0.1")],
        ip("10.96.0.1"),
    );
    assert_eq!(names.ips, [ip("127.0.0.1"), ip("10.96.0.1")]);
}

#[test]
fn apiserver_dns_names_are_the_kubernetes_service_names_and_the_hostname() {
    let names = ServingNames::for_apiserver(&[], ip("10.96.0.1"));
    assert_eq!(
        names.dns[..5],
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim().to_ascii_lowercase();
    if !names.dns[..5].contains(&hostname) {
        assert_eq!(names.dns[5..], [hostname]);
    }
}
