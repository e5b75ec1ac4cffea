//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), here rather than in the fuzz
//! crate so that `cargo test` replays the committed corpus through exactly the code the
//! fuzzer runs (`runtime/tests/fuzz_corpus.rs`), on the stable toolchain, in CI.
//!
//! Each function takes arbitrary bytes and panics only when it finds a bug: a panic in the
//! code under test, or a broken property (an entry landing outside the snapshot, a reference
//! that does not survive printing, a malformed log line, a request that does not survive
//! encoding).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use crate::image::{manifest, reference::Reference, unpack};
use crate::shim::{cri_log, protocol, time};

/// Decompressed bytes one input may unpack: keeps each run short whatever the compression
/// ratio (the unpack bounds themselves are tested elsewhere).
const UNPACK_READ_LIMIT: u64 = 8 << 20;

/// Unpack `data` as a layer (its first byte picks the media type, so plain, gzip, zstd and
/// sniffed streams are all reached) into a fresh directory under `scratch`, then check that
/// nothing was created, changed or removed beside that directory.
pub fn unpack_layer(data: &[u8], scratch: &Path) {
    let (media_type, layer) = match data.split_first() {
        Some((b, rest)) => (
            match b % 4 {
                0 => "application/vnd.oci.image.layer.v1.tar",
                1 => "application/vnd.oci.image.layer.v1.tar+gzip",
                2 => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/octet-stream",
            },
            rest,
        ),
        None => ("application/vnd.oci.image.layer.v1.tar", data),
    };
    // <scratch>/run/{sentinel,layer}: an entry escaping `layer` through `..`, an absolute
    // path, a symlink or a hard link would show up in `run` or in `scratch`.
    let run = scratch.join("run");
    let dest = run.join("layer");
    let sentinel = run.join("sentinel");
    // A previous run that panicked may have left its tree.
    let _ = std::fs::remove_dir_all(&run);
    let before = listing(scratch);
    if std::fs::create_dir_all(&dest).is_err() || std::fs::write(&sentinel, b"sentinel").is_err() {
        panic!("cannot prepare the scratch directory {}", run.display());
    }
    let result = unpack::decompress(media_type, layer)
        .and_then(|r| unpack::unpack_layer(r.take(UNPACK_READ_LIMIT), &dest));
    let mut want: BTreeSet<OsString> = ["layer", "sentinel"].iter().map(OsString::from).collect();
    assert_eq!(listing(&run), want, "an entry landed beside the snapshot");
    assert_eq!(
        std::fs::read(&sentinel).ok().as_deref(),
        Some(&b"sentinel"[..]),
        "the file beside the snapshot was changed"
    );
    want = before;
    want.insert("run".into());
    assert_eq!(listing(scratch), want, "an entry landed above the snapshot");
    if let Ok(stats) = result {
        assert!(stats.bytes <= UNPACK_READ_LIMIT, "{stats:?}");
    }
    if let Err(e) = std::fs::remove_dir_all(&run) {
        panic!("the unpacked tree cannot be removed: {e}");
    }
}

fn listing(dir: &Path) -> BTreeSet<OsString> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    }
}

/// A reference that parses prints as a reference that parses to the same thing, and its
/// repository and tagged names parse too.
pub fn image_reference(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = Reference::parse(input) else {
        return;
    };
    let printed = parsed.to_string();
    let again = Reference::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, parsed, "{input:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
    if let Some(tagged) = parsed.tagged_name() {
        let t = Reference::parse(&tagged).unwrap_or_else(|e| panic!("{tagged:?}: {e}"));
        assert_eq!(t.tag(), parsed.tag());
        assert_eq!(t.repository(), parsed.repository());
    }
    let name = parsed.repository();
    let r = Reference::parse(&name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
    assert_eq!(r.repository(), name);
}

/// Manifests, indexes and image configs: parsing never panics, and what validates is sane.
pub fn image_manifest(data: &[u8]) {
    if let Ok(m) = manifest::parse_manifest(data) {
        for l in m.layers.iter().chain([&m.config]) {
            assert!(manifest::validate_descriptor(l, "layer").is_ok());
        }
        let _ = manifest::parse_config(data, m.layers.len());
    }
    let layers = data.first().map_or(0, |b| usize::from(b % 4));
    if let Ok(c) = manifest::parse_config(data, layers) {
        assert_eq!(c.rootfs.diff_ids.len(), layers);
    }
    if let Ok(index) = serde_json::from_slice::<manifest::Index>(data) {
        for arch in ["amd64", "arm64", manifest::host_arch()] {
            if let Ok(d) = manifest::select_platform(&index, arch) {
                assert!(manifest::validate_descriptor(d, "index entry").is_ok());
                let p = d
                    .platform
                    .as_ref()
                    .map(|p| (p.os.as_str(), p.architecture.as_str()));
                assert_eq!(p, Some(("linux", arch)));
            }
        }
    }
}

/// Feed `data` to the CRI log splitter in chunks (each chunk's length is taken from the
/// input), then check every line is `<RFC3339Nano> <stream> <P|F> <text>`, no text passes
/// [`cri_log::LINE_LIMIT`], and the texts put back together are the input with each
/// `\r\n` turned into `\n` (and an unterminated end kept).
pub fn cri_log_lines(data: &[u8]) {
    // The first 8 bytes are a timestamp (seconds and nanoseconds) to format.
    let (stamp, mut rest) = data.split_at(data.len().min(8));
    let mut raw = [0u8; 8];
    raw[..stamp.len()].copy_from_slice(stamp);
    let secs = u64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])) * 8;
    let nanos = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]) % 1_000_000_000;
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    let timestamp = time::rfc3339_nano(when);
    // Past 2262 a time has no i64 nanoseconds: parsing says so rather than overflowing.
    let want = (secs as i64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(i64::from(nanos)));
    assert_eq!(time::parse_rfc3339_nanos(&timestamp), want, "{timestamp}");
    // Whatever a (corrupt) exit file or log line holds, parsing it must not panic.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = time::parse_rfc3339_nanos(text);
        let _ = text.split(' ').next().map(time::parse_rfc3339_nanos);
    }

    let stream = if data.len().is_multiple_of(2) {
        cri_log::Stream::Stdout
    } else {
        cri_log::Stream::Stderr
    };
    let mut splitter = cri_log::Splitter::new(stream);
    let mut out = Vec::new();
    let mut input = Vec::new();
    while let Some((len, tail)) = rest.split_first() {
        // Chunk lengths up to 64 KiB, so that lines longer than the limit happen.
        let len = (usize::from(*len) * 257).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        splitter.feed(chunk, &timestamp, &mut out);
        input.extend_from_slice(chunk);
        rest = tail;
    }
    splitter.finish(&timestamp, &mut out);

    let mut text = Vec::new();
    let mut lines = out.split_inclusive(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line
            .strip_suffix(b"\n")
            .unwrap_or_else(|| panic!("unterminated log line {line:?}"));
        let prefix = format!("{timestamp} {} ", stream.name());
        let body = line
            .strip_prefix(prefix.as_bytes())
            .unwrap_or_else(|| panic!("bad log line prefix: {line:?}"));
        let (tag, part) = match body {
            [tag, b' ', part @ ..] => (*tag, part),
            _ => panic!("no P/F tag: {line:?}"),
        };
        assert!(
            part.len() <= cri_log::LINE_LIMIT,
            "a {} byte line",
            part.len()
        );
        text.extend_from_slice(part);
        match tag {
            b'F' => text.push(b'\n'),
            // A partial line is cut at the limit, except the stream's unterminated end.
            b'P' => assert!(
                part.len() == cri_log::LINE_LIMIT || lines.peek().is_none(),
                "a short P line in the middle: {} bytes",
                part.len()
            ),
            other => panic!("tag {:?} in {line:?}", other as char),
        }
    }
    let mut want = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"\r\n") {
            i += 1;
            continue;
        }
        want.push(input[i]);
        i += 1;
    }
    assert!(text == want, "content not preserved");
}

/// The shim's wire protocol: a request line that decodes encodes to one that decodes to the
/// same request; answers decode into every reply type without panicking, and an error reply
/// survives encoding.
pub fn shim_protocol(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<protocol::Request>(data) {
        let line = match serde_json::to_vec(&request) {
            Ok(line) => line,
            Err(e) => panic!("{request:?} does not encode: {e}"),
        };
        let again: protocol::Request = serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("{request:?} encoded as {line:?}, which fails: {e}"));
        assert_eq!(again, request);
        assert!(!request.op().is_empty());
    }
    let _ = protocol::decode_answer::<protocol::PingReply>(data);
    let _ = protocol::decode_answer::<protocol::StatusReply>(data);
    let _ = protocol::decode_answer::<protocol::CreateReply>(data);
    let _ = protocol::decode_answer::<protocol::ExecReply>(data);
    let _ = protocol::decode_answer::<protocol::ExitStatus>(data);
    if let Err(protocol::AnswerError::Refused(e)) = protocol::decode_answer::<protocol::Empty>(data)
    {
        let line = protocol::encode_error(&e);
        assert!(!line[..line.len() - 1].contains(&b'\n'));
        assert_eq!(
            protocol::decode_answer::<protocol::Empty>(&line),
            Err(protocol::AnswerError::Refused(e))
        );
    }
    if let Ok(status) = protocol::decode_answer::<protocol::StatusReply>(data) {
        let line = protocol::encode_success(&status);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(protocol::decode_answer(&line), Ok(status));
    }
}
