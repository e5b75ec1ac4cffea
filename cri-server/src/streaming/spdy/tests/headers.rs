use flate2::{Compress, Compression, FlushCompress};

use super::{hex, noise, PYTHON_SYN_STREAMS};
use crate::streaming::spdy::frame::{Decoder, Frame};
use crate::streaming::spdy::headers::*;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut h = Headers::new();
    for (n, v) in pairs {
        h.insert(n, v);
    }
    h
}

/// Adler-32 of the SPDY/3 dictionary as spdystream's copy gives it (Python:
/// `zlib.adler32(headerDictionary)`); it is the dictionary id in every zlib header.
const DICTIONARY_ADLER: u32 = 0xe3c6_a7c2;

#[test]
fn dictionary_is_the_specs() {
    assert_eq!(DICTIONARY.len(), 1423);
    assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
    assert!(DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    let mut zlib = Compress::new(Compression::default(), true);
    assert_eq!(
        zlib.set_dictionary(&DICTIONARY).expect("dictionary"),
        DICTIONARY_ADLER
    );
}

#[test]
fn blocks_round_trip_with_state_carried_across_blocks() {
    let blocks = [
        headers(&[("streamtype", "error")]),
        headers(&[("streamtype", "stdout")]),
        Headers::new(),
        headers(&[("StreamType", "data"), ("port", "8080"), ("requestid", "0")]),
        headers(&[("x-multi", "a\0b\0c"), ("empty", "")]),
        headers(&[("big", &"v".repeat(100_000))]),
    ];
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::default();
    let mut total = 0;
    for block in &blocks {
        let wire = enc.encode(block).expect("encodes");
        total += wire.len();
        assert_eq!(&dec.decode(&wire).expect("decodes"), block);
    }
    // The repeated names compress against the dictionary and the earlier blocks.
    assert!(total < 2000, "{total} compressed bytes");
    let h = &blocks[3];
    assert_eq!(h.get("streamtype"), Some("data"));
    assert_eq!(h.get("StreamType"), Some("data"));
    assert_eq!(
        h.iter().next(),
        Some(("streamtype", "data")),
        "names are lowercased"
    );
    assert_eq!(
        blocks[4].values("x-multi").collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
}

/// The first block starts with a zlib header naming the preset dictionary (FDICT set,
/// DICTID the dictionary's Adler-32), as spdystream's reader requires.
#[test]
fn encoder_announces_the_dictionary() {
    let wire = HeaderEncoder::new()
        .encode(&Headers::new())
        .expect("encodes");
    assert_eq!(wire[0] & 0x0f, 8, "deflate");
    assert_ne!(wire[1] & 0x20, 0, "FDICT");
    assert_eq!(u16::from_be_bytes([wire[0], wire[1]]) % 31, 0, "FCHECK");
    assert_eq!(wire[2..6], DICTIONARY_ADLER.to_be_bytes());
    // Sync flush: the block ends with the empty stored block 00 00 ff ff.
    assert!(wire.ends_with(&[0, 0, 0xff, 0xff]));
}

/// Two SYN_STREAMs compressed by Python's zlib on one stream, field by field.
#[test]
fn python_zlib_blocks_decode_in_sequence() {
    let mut dec = HeaderDecoder::default();
    let want = [(1, "error"), (3, "stdout")];
    for (fixture, (id, streamtype)) in PYTHON_SYN_STREAMS.iter().zip(want) {
        let mut buf = hex(fixture);
        // The frame header by hand: control bit + version 3, type 1, flags 0, length.
        assert_eq!(buf[..4], [0x80, 0x03, 0x00, 0x01]);
        assert_eq!(usize::from(buf[7]), buf.len() - 8);
        match Decoder::default().decode(&mut buf) {
            Ok(Some(Frame::SynStream {
                stream_id,
                flags: 0,
                associated_to: 0,
                priority: 0,
                slot: 0,
                header_block,
            })) => {
                assert_eq!(stream_id, id);
                let h = dec.decode(&header_block).expect("python block");
                assert_eq!(
                    h.iter().collect::<Vec<_>>(),
                    vec![("streamtype", streamtype)]
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // The second block alone, on a fresh decoder, is not a zlib stream: the state matters.
    let mut buf = hex(PYTHON_SYN_STREAMS[1]);
    let Ok(Some(Frame::SynStream { header_block, .. })) = Decoder::default().decode(&mut buf)
    else {
        panic!("second fixture frames");
    };
    assert!(HeaderDecoder::default().decode(&header_block).is_err());
}

#[test]
fn bounds_are_enforced() {
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new(1000, 3);
    let too_big = enc
        .encode(&headers(&[("a", &"x".repeat(2000))]))
        .expect("encodes");
    let err = dec.decode(&too_big).expect_err("over 1000 bytes");
    assert_eq!(err, HeaderError::TooLarge { limit: 1000 });
    assert!(
        err.is_fatal(),
        "the zlib state is lost once decompression stops part way"
    );

    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new(1000, 3);
    let many = headers(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let err = dec
        .decode(&enc.encode(&many).expect("encodes"))
        .expect_err("4 > 3");
    assert_eq!(err, HeaderError::TooMany { count: 4, limit: 3 });
    assert!(!err.is_fatal());
    // The block was consumed whole, so the next one still decodes.
    let ok = headers(&[("a", "1")]);
    assert_eq!(dec.decode(&enc.encode(&ok).expect("encodes")), Ok(ok));
}

#[test]
fn malformed_blocks_are_refused() {
    let block = |pairs: &[(&[u8], &[u8])], count: u32, tail: &[u8]| {
        let mut v = count.to_be_bytes().to_vec();
        for (n, val) in pairs {
            v.extend((n.len() as u32).to_be_bytes());
            v.extend(*n);
            v.extend((val.len() as u32).to_be_bytes());
            v.extend(*val);
        }
        v.extend(tail);
        v
    };
    let cases: Vec<(Vec<u8>, HeaderError)> = vec![
        (
            block(&[(b"Port", b"1")], 1, b""),
            HeaderError::NotLowercase("Port".into()),
        ),
        (
            block(&[(b"port", b"1"), (b"port", b"2")], 2, b""),
            HeaderError::Duplicate("port".into()),
        ),
        (block(&[(b"", b"1")], 1, b""), HeaderError::EmptyName),
        (block(&[(b"port", b"1")], 2, b""), HeaderError::Truncated),
        (
            block(&[(b"port", b"1")], 1, b"xx"),
            HeaderError::TrailingBytes(2),
        ),
        (block(&[(b"port", b"\xff")], 1, b""), HeaderError::NotUtf8),
        (vec![0, 0], HeaderError::Truncated),
        (
            block(&[], u32::MAX, b""),
            HeaderError::TooMany {
                count: u64::from(u32::MAX),
                limit: MAX_HEADERS,
            },
        ),
        // A name length past the end: no allocation of 4 GiB, just truncated.
        (
            [&1u32.to_be_bytes()[..], &u32::MAX.to_be_bytes()].concat(),
            HeaderError::Truncated,
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(Headers::from_block(&raw, MAX_HEADERS), Err(want.clone()));
        // Through zlib too, and the error is per block, not fatal.
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(&DICTIONARY).expect("dictionary");
        let mut wire = Vec::with_capacity(raw.len() + 100);
        zlib.compress_vec(&raw, &mut wire, FlushCompress::Sync)
            .expect("compress");
        let err = HeaderDecoder::default()
            .decode(&wire)
            .expect_err("malformed");
        assert_eq!(err, want);
        assert!(!err.is_fatal());
    }
}

#[test]
fn garbage_compressed_blocks_are_errors() {
    for seed in 0..500u64 {
        let mut junk = noise(seed, (seed as usize * 13) % 200);
        if seed % 3 == 0 && junk.len() > 6 {
            // A valid zlib header with the right dictionary id, then noise.
            junk[..6].copy_from_slice(&[0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
        }
        let mut dec = HeaderDecoder::new(4096, 100);
        // Either an error or (rarely) a block; never a panic or a hang.
        let _ = dec.decode(&junk);
        let _ = dec.decode(&junk);
    }
    let mut dec = HeaderDecoder::default();
    let err = dec
        .decode(&[0x78, 0xbb, 0, 0, 0, 1, 0xff])
        .expect_err("wrong dictionary id");
    assert!(err.is_fatal(), "{err}");
}
