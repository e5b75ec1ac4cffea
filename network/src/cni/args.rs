//! What the runtime tells plugins about a pod: `CNI_ARGS` (kubelet's `K8S_POD_*` keys) and
//! the `runtimeConfig` capability arguments (`portMappings`, `bandwidth`, `ipRanges`,
//! `dns`, `io.kubernetes.cri.pod-annotations`), shaped as containerd sends them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::PodRequest;
use crate::error::{Error, Result};
use crate::Protocol;

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// `IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..`.
/// A value with `;` or `=` would forge keys, so it is refused.
pub fn cni_args(req: &PodRequest<'_>) -> Result<String> {
    let pairs = [
        (
            "K8S_POD_NAMESPACE",
            req.namespace,
            "config.metadata.namespace",
        ),
        ("K8S_POD_NAME", req.name, "config.metadata.name"),
        ("K8S_POD_INFRA_CONTAINER_ID", req.id, "pod_sandbox_id"),
        ("K8S_POD_UID", req.uid, "config.metadata.uid"),
    ];
    let mut s = String::from("IgnoreUnknown=1");
    for (key, value, field) in pairs {
        if value.contains([';', '=']) || value.chars().any(char::is_control) {
            return Err(Error::invalid(
                field,
                format!(
                    "{value:?} can't be passed to CNI plugins (';', '=' or control characters)"
                ),
            ));
        }
        s.push_str(&format!(";{key}={value}"));
    }
    Ok(s)
}

/// The capability arguments; each plugin gets those it declares.
pub fn runtime_config(req: &PodRequest<'_>, pod_cidr: Option<&str>) -> Result<Map<String, Value>> {
    let mut rc = Map::new();
    let ports: Vec<Value> = req
        .ports
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                },
            });
            if let Some(ip) = p.host_ip.filter(|ip| !ip.is_unspecified()) {
                m["hostIP"] = Value::String(ip.to_string());
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        rc.insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(bw) = bandwidth(req.annotations)? {
        rc.insert("bandwidth".into(), bw);
    }
    if let Some(cidr) = pod_cidr {
        rc.insert("ipRanges".into(), json!([[{ "subnet": cidr }]]));
    }
    if let Some(dns) = req.dns {
        rc.insert(
            "dns".into(),
            json!({ "servers": dns.servers, "searches": dns.searches, "options": dns.options }),
        );
    }
    rc.insert(
        "io.kubernetes.cri.pod-annotations".into(),
        Value::Object(
            req.annotations
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    Ok(rc)
}

/// The bandwidth plugin's arguments from the pod's annotations, in bits per second, with
/// the burst unlimited as containerd sets it.
fn bandwidth(annotations: &BTreeMap<String, String>) -> Result<Option<Value>> {
    let mut bw = Map::new();
    for (annotation, rate, burst) in [
        (INGRESS_ANNOTATION, "ingressRate", "ingressBurst"),
        (EGRESS_ANNOTATION, "egressRate", "egressBurst"),
    ] {
        if let Some(v) = annotations.get(annotation) {
            let bits = parse_quantity(v).ok_or_else(|| {
                Error::invalid(
                    format!("config.annotations[{annotation}]"),
                    format!("{v:?} is not a quantity such as 10M"),
                )
            })?;
            // kubelet's own bounds: 1 kbit/s to 1 Pbit/s.
            if !(1_000..=1_000_000_000_000_000).contains(&bits) {
                return Err(Error::invalid(
                    format!("config.annotations[{annotation}]"),
                    format!("{v} is outside 1k..1P bits per second"),
                ));
            }
            bw.insert(rate.into(), json!(bits));
            bw.insert(burst.into(), json!(u32::MAX));
        }
    }
    Ok((!bw.is_empty()).then_some(Value::Object(bw)))
}

/// A Kubernetes resource quantity (`10M`, `1Gi`, `500k`, `1.5M`) as an integer.
pub fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num.len() > 30 {
        return None;
    }
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let v = (n * mult).round();
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortMapping;

    fn req<'a>(
        annotations: &'a BTreeMap<String, String>,
        ports: &'a [PortMapping],
    ) -> PodRequest<'a> {
        PodRequest {
            id: "abc",
            netns: std::path::Path::new("/run/x/net"),
            name: "web",
            namespace: "default",
            uid: "u-1",
            annotations,
            ports,
            dns: None,
        }
    }

    #[test]
    fn cni_args_and_forgery() {
        let a = BTreeMap::new();
        assert_eq!(
            cni_args(&req(&a, &[])).expect("args"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
        let mut r = req(&a, &[]);
        r.name = "x;K8S_POD_NAMESPACE=kube-system";
        let err = cni_args(&r).expect_err("forged");
        assert!(err.to_string().contains("config.metadata.name"), "{err}");
    }

    #[test]
    fn capabilities() {
        let annotations: BTreeMap<String, String> = [
            (INGRESS_ANNOTATION.to_string(), "10M".to_string()),
            ("other".to_string(), "x".to_string()),
        ]
        .into();
        let ports = [
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: Some("127.0.0.1".parse().expect("ip")),
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 0,
                host_ip: None,
            },
        ];
        let rc = runtime_config(&req(&annotations, &ports), Some("10.233.5.0/24")).expect("rc");
        assert_eq!(
            rc["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(rc["bandwidth"]["ingressRate"], 10_000_000);
        assert!(rc["bandwidth"].get("egressRate").is_none());
        assert_eq!(rc["ipRanges"], json!([[{"subnet": "10.233.5.0/24"}]]));
        assert_eq!(rc["io.kubernetes.cri.pod-annotations"]["other"], "x");

        let bad: BTreeMap<String, String> =
            [(EGRESS_ANNOTATION.to_string(), "fast".to_string())].into();
        let err = runtime_config(&req(&bad, &[]), None).expect_err("bad");
        assert!(err.to_string().contains(EGRESS_ANNOTATION), "{err}");
        let tiny: BTreeMap<String, String> =
            [(EGRESS_ANNOTATION.to_string(), "10".to_string())].into();
        assert!(runtime_config(&req(&tiny, &[]), None).is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1.5k"), Some(1500));
        assert_eq!(parse_quantity("1Mi"), Some(1 << 20));
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("M"), None);
        assert_eq!(parse_quantity("10X"), None);
        assert_eq!(parse_quantity("-5"), None);
    }
}
