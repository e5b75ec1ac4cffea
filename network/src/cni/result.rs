//! ADD results: checked against the spec's types, and the pod's addresses taken from them.

use std::net::IpAddr;

use rscni_types::types::CNIResult;
use serde_json::Value;

use crate::error::{Error, Result};

/// More than any real pod has (dual stack is two).
const MAX_IPS: usize = 64;

/// Checks a plugin's ADD output: a JSON object in the result layout of 0.3.x/0.4.0 or
/// 1.x (both parse as [`CNIResult`]: the legacy `version` key is ignored).
pub fn parse(plugin: &str, stdout: &[u8]) -> Result<(Value, CNIResult)> {
    let bad = |why: String| Error::Plugin {
        plugin: plugin.to_string(),
        op: "ADD".into(),
        message: format!("bad result: {why}"),
    };
    let value: Value = serde_json::from_slice(stdout).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    let result: CNIResult =
        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
    if result.ips.len() > MAX_IPS || result.interfaces.len() > MAX_IPS {
        return Err(bad(format!("more than {MAX_IPS} addresses or interfaces")));
    }
    Ok((value, result))
}

/// The pod's addresses: those on `ifname` inside the pod (as containerd selects them), or
/// every address when the result names no interfaces; IPv4 first, so that a dual-stack
/// pod's primary address is its IPv4 one, as kubelet expects.
pub fn pod_ips(result: &CNIResult, ifname: &str) -> Vec<IpAddr> {
    let in_pod = |i: Option<u32>| match i {
        None => true,
        Some(i) => result
            .interfaces
            .get(i as usize)
            .is_none_or(|iface| iface.name == ifname && iface.sandbox.is_some()),
    };
    let mut ips: Vec<IpAddr> = result
        .ips
        .iter()
        .filter(|ip| in_pod(ip.interface))
        .map(|ip| ip.address.addr())
        .collect();
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_ips_of_the_pod_interface() {
        let out = br#"{"cniVersion":"1.0.0",
            "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},
                          {"name":"veth1","mac":"aa:bb:cc:dd:ee:fe"},
                          {"name":"eth0","mac":"aa:bb:cc:dd:ee:fd","sandbox":"/run/x/net"}],
            "ips":[{"address":"fd00:cafe::5/64","gateway":"fd00:cafe::1","interface":2},
                   {"address":"10.233.0.5/24","gateway":"10.233.0.1","interface":2},
                   {"address":"10.233.0.1/24","interface":0}],
            "dns":{}}"#;
        let (_, r) = parse("bridge", out).expect("parse");
        let ips = pod_ips(&r, "eth0");
        assert_eq!(
            ips,
            vec![
                "10.233.0.5".parse::<IpAddr>().expect("ip"),
                "fd00:cafe::5".parse().expect("ip")
            ]
        );
    }

    #[test]
    fn legacy_results_and_bad_output() {
        let out =
            br#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.234.0.9/24"}],"dns":{}}"#;
        let (_, r) = parse("ptp", out).expect("parse");
        assert_eq!(
            pod_ips(&r, "eth0"),
            vec!["10.234.0.9".parse::<IpAddr>().expect("ip")]
        );
        assert!(parse("x", b"[]").is_err());
        assert!(parse("x", b"{\"ips\":[{\"address\":\"not-an-ip\"}]}").is_err());
        assert!(parse("x", b"").is_err());
    }
}
