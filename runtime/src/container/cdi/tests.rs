//! CDI: parsing (JSON and YAML), resolution across directories, the edits on a spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::*;
use crate::error::ErrorKind;

const YAML: &str = r#"
cdiVersion: "0.6.0"
kind: vendor.test/dev
containerEdits:
  env: ["SPEC_LEVEL=1"]
devices:
  - name: one
    containerEdits:
      env: ["CDI_ONE=yes", "SPEC_LEVEL=2"]
      deviceNodes:
        - path: /dev/cdi-null
          hostPath: /dev/null
          permissions: rw
  - name: two
    containerEdits:
      deviceNodes:
        - path: /dev/fake
          type: c
          major: 240
          minor: 7
          fileMode: 0o600
      mounts:
        - hostPath: /opt/vendor/lib
          containerPath: /usr/lib/vendor
          options: [ro, nosuid]
      hooks:
        - hookName: createContainer
          path: /bin/true
      additionalGids: [44]
"#;

const JSON: &str = r#"{
  "cdiVersion": "0.3.0",
  "kind": "example.com/gpu",
  "devices": [
    {"name": "all", "containerEdits": {"env": ["GPU=all"]}},
    {"name": "gpu0:a.b_c-d", "containerEdits": {"env": ["GPU=0"]}}
  ],
  "someFutureField": {"ignored": true}
}"#;

fn req(name: &str, i: usize) -> CdiRequest {
    CdiRequest {
        name: name.into(),
        field: format!("config.cdi_devices[{i}]"),
    }
}

fn dirs_with(files: &[(&str, &str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let root = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for d in ["etc", "run"] {
        let p = root.path().join(d);
        std::fs::create_dir(&p).unwrap();
        dirs.push(p);
    }
    for (dir, name, text) in files {
        std::fs::write(root.path().join(dir).join(name), text).unwrap();
    }
    (root, dirs)
}

fn base_spec() -> Spec {
    let mut spec = Spec::default();
    let mut p = spec.process().clone().unwrap();
    p.set_env(Some(vec!["PATH=/bin".into(), "SPEC_LEVEL=0".into()]));
    spec.set_process(Some(p));
    spec
}

fn env(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().env().clone().unwrap()
}

#[test]
fn parses_yaml_and_json() {
    let y = parse_spec(YAML, false).unwrap();
    assert_eq!(y.kind, "vendor.test/dev");
    assert_eq!(y.devices.len(), 2);
    assert_eq!(
        y.devices[1].container_edits.device_nodes[0].major,
        Some(240)
    );
    assert_eq!(
        y.devices[1].container_edits.device_nodes[0].file_mode,
        Some(0o600)
    );
    assert_eq!(
        y.devices[1].container_edits.mounts[0].options,
        ["ro", "nosuid"]
    );
    assert_eq!(y.container_edits.env, ["SPEC_LEVEL=1"]);
    let j = parse_spec(JSON, true).unwrap();
    assert_eq!(j.devices[1].name, "gpu0:a.b_c-d");
    // JSON is YAML too.
    assert_eq!(parse_spec(JSON, false).unwrap(), j);
}

#[test]
fn rejects_bad_specs() {
    let cases = [
        (JSON.replace("0.3.0", "0.2.0"), "cdiVersion"),
        (JSON.replace("0.3.0", "1.0.0"), "cdiVersion"),
        (JSON.replace("0.3.0", "0.9.0"), "cdiVersion"),
        (JSON.replace("example.com/gpu", "examplegpu"), "kind"),
        (JSON.replace("example.com/gpu", "example.com/g.pu"), "kind"),
        (JSON.replace("\"all\"", "\"-all\""), "device name"),
        ("{".to_string(), "EOF"),
    ];
    for (text, want) in cases {
        let err = parse_spec(&text, true).unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
    }
    for v in ["0.4.0", "0.5.0", "0.7.0", "0.8.0"] {
        parse_spec(&JSON.replace("0.3.0", v), true).unwrap();
    }
}

#[test]
fn qualified_names() {
    assert_eq!(
        parse_qualified("nvidia.com/gpu=0").unwrap(),
        ("nvidia.com/gpu", "0")
    );
    assert_eq!(parse_qualified("vendor.test/dev=all").unwrap().1, "all");
    for bad in [
        "nvidia.com/gpu",
        "gpu=0",
        "nvidia.com/=0",
        "nvidia.com/gpu=",
        "-v.com/gpu=0",
        "v.com/g.pu=0",
        "v.com/gpu=a b",
    ] {
        assert!(parse_qualified(bad).is_err(), "{bad}");
    }
}

#[test]
fn annotations_are_requests_too() {
    let mut a = BTreeMap::new();
    a.insert(
        "cdi.k8s.io/a".to_string(),
        "vendor.test/dev=one, vendor.test/dev=two".to_string(),
    );
    a.insert("other/x".to_string(), "vendor.test/dev=three".to_string());
    let got = from_annotations(&a);
    let names: Vec<&str> = got.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["vendor.test/dev=one", "vendor.test/dev=two"]);
    assert_eq!(got[0].field, "config.annotations[\"cdi.k8s.io/a\"]");
}

#[test]
fn resolves_and_applies_edits() {
    let (_root, dirs) = dirs_with(&[("etc", "dev.yaml", YAML), ("etc", "gpu.json", JSON)]);
    let reqs = [
        req("vendor.test/dev=one", 0),
        req("example.com/gpu=all", 1),
        req("vendor.test/dev=two", 2),
        req("vendor.test/dev=one", 3),
    ];
    let resolved = resolve(&dirs, &reqs).unwrap();
    // dev spec edits once, one, gpu spec edits, all, two; the duplicate once.
    assert_eq!(resolved.edits.len(), 5);
    let mut spec = base_spec();
    apply(&mut spec, &resolved).unwrap();
    assert_eq!(
        env(&spec),
        ["PATH=/bin", "CDI_ONE=yes", "SPEC_LEVEL=2", "GPU=all"]
    );
    let linux = spec.linux().as_ref().unwrap();
    let devs = linux.devices().clone().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0].path(), &PathBuf::from("/dev/cdi-null"));
    assert_eq!(
        (devs[0].typ(), devs[0].major(), devs[0].minor()),
        (LinuxDeviceType::C, 1, 3)
    );
    assert_eq!(
        (devs[1].major(), devs[1].minor(), devs[1].file_mode()),
        (240, 7, Some(0o600))
    );
    let rules: Vec<String> = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(rules.len(), 2);
    assert!(
        rules[0].contains("1:3") && rules[0].contains("rw"),
        "{rules:?}"
    );
    assert!(
        rules[1].contains("240:7") && rules[1].contains("rwm"),
        "{rules:?}"
    );
    let mounts = spec.mounts().clone().unwrap();
    let m = mounts
        .iter()
        .find(|m| m.destination() == &PathBuf::from("/usr/lib/vendor"))
        .unwrap();
    assert_eq!(m.typ().as_deref(), Some("bind"));
    assert_eq!(m.options().clone().unwrap(), ["ro", "nosuid", "bind"]);
    let gids = spec
        .process()
        .as_ref()
        .unwrap()
        .user()
        .additional_gids()
        .clone()
        .unwrap();
    assert_eq!(gids, [44]);
}

#[test]
fn later_dirs_win_and_duplicates_conflict() {
    let run_yaml = YAML.replace("CDI_ONE=yes", "CDI_ONE=run");
    let (_root, dirs) = dirs_with(&[("etc", "dev.yaml", YAML), ("run", "dev.yaml", &run_yaml)]);
    let resolved = resolve(&dirs, &[req("vendor.test/dev=one", 0)]).unwrap();
    let mut spec = base_spec();
    apply(&mut spec, &resolved).unwrap();
    assert!(
        env(&spec).contains(&"CDI_ONE=run".to_string()),
        "{:?}",
        env(&spec)
    );

    let (_root, dirs) = dirs_with(&[("run", "a.yaml", YAML), ("run", "b.yml", YAML)]);
    let err = resolve(&dirs, &[req("vendor.test/dev=one", 0)]).unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
}

#[test]
fn unknown_devices_name_the_field() {
    let (_root, dirs) = dirs_with(&[
        ("etc", "dev.yaml", YAML),
        ("etc", "broken.json", "{not json"),
        ("etc", "notes.txt", "ignored"),
    ]);
    let reqs = [
        req("vendor.test/dev=one", 0),
        req("vendor.test/dev=nope", 1),
    ];
    let err = resolve(&dirs, &reqs).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidArgument {
            field: "config.cdi_devices[1]".into()
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("vendor.test/dev=nope") && msg.contains("broken.json"),
        "{msg}"
    );
    let err = resolve(&dirs, &[req("not-qualified", 0)]).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidArgument {
            field: "config.cdi_devices[0]".into()
        }
    );
    // Nothing requested: nothing read, even with no directories at all.
    assert!(resolve(&[PathBuf::from("/nonexistent")], &[])
        .unwrap()
        .edits
        .is_empty());
}

#[test]
fn spec_files_are_bounded() {
    let big = format!("{JSON}{}", " ".repeat(MAX_SPEC_BYTES as usize));
    let (_root, dirs) = dirs_with(&[("etc", "big.json", &big)]);
    let err = resolve(&dirs, &[req("example.com/gpu=all", 0)]).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn host_node_missing_is_an_error() {
    let y = YAML.replace("hostPath: /dev/null", "hostPath: /dev/does-not-exist");
    let (_root, dirs) = dirs_with(&[("etc", "dev.yaml", &y)]);
    let resolved = resolve(&dirs, &[req("vendor.test/dev=one", 0)]).unwrap();
    let err = apply(&mut base_spec(), &resolved).unwrap_err();
    assert!(err.to_string().contains("/dev/does-not-exist"), "{err}");
}
