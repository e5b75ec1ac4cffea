use bytes::{Bytes, BytesMut};

use super::{hex, noise, GO_CLIENT_CAPTURE};
use crate::streaming::spdy::frame::*;
use crate::streaming::spdy::headers::HeaderDecoder;

fn encoded(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(&mut out).expect("encodes");
    out
}

fn decode_all(mut buf: BytesMut) -> Vec<Frame> {
    let decoder = Decoder::default();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).expect("decodes") {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    frames
}

/// Each frame's bytes written field by field from the spec: for control frames the control
/// bit with version 3 (0x8003), the 16-bit type, the flags byte, the 24-bit length, then the
/// payload; for DATA the stream id with the control bit clear, the flags, the length.
#[test]
fn frames_match_the_spec_bytes() {
    let cases: Vec<(Frame, &str)> = vec![
        (
            Frame::Data {
                stream_id: 7,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hi"),
            },
            "00000007 01 000002 6869",
        ),
        (
            Frame::SynStream {
                stream_id: 1,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                associated_to: 0,
                priority: 3,
                slot: 0,
                header_block: Bytes::from_static(&[0xcc]),
            },
            // 10 fixed bytes + 1 of headers; priority 3 in the top 3 bits: 0x60.
            "8003 0001 03 00000b 00000001 00000000 60 00 cc",
        ),
        (
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                header_block: Bytes::from_static(&[0xaa, 0xbb]),
            },
            "8003 0002 00 000006 00000001 aabb",
        ),
        (
            Frame::RstStream {
                stream_id: 5,
                status: status::REFUSED_STREAM,
            },
            "8003 0003 00 000008 00000005 00000003",
        ),
        (
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65536,
                }],
            },
            // count 1; flags 1 and id 7 (INITIAL_WINDOW_SIZE) share a word.
            "8003 0004 00 00000c 00000001 01000007 00010000",
        ),
        (
            Frame::Ping { id: 0x0102_0304 },
            "8003 0006 00 000004 01020304",
        ),
        (
            Frame::GoAway {
                last_good_stream_id: 3,
                status: goaway::PROTOCOL_ERROR,
            },
            "8003 0007 00 000008 00000003 00000001",
        ),
        (
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                header_block: Bytes::from_static(&[0xdd]),
            },
            "8003 0008 01 000005 00000003 dd",
        ),
        (
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 32768,
            },
            "8003 0009 00 000008 00000001 00008000",
        ),
    ];
    for (frame, bytes) in cases {
        let want = hex(bytes);
        assert_eq!(encoded(&frame), want, "encoding {}", frame.name());
        assert_eq!(decode_all(want), vec![frame]);
    }
}

#[test]
fn every_frame_type_round_trips_in_one_buffer() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 0x7fff_fffd,
            flags: FLAG_FIN,
            associated_to: 9,
            priority: 7,
            slot: 2,
            header_block: Bytes::from(noise(1, 300)),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: FLAG_FIN,
            header_block: Bytes::new(),
        },
        Frame::Data {
            stream_id: 3,
            flags: 0,
            data: Bytes::from(noise(2, 70_000)),
        },
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::new(),
        },
        Frame::RstStream {
            stream_id: 11,
            status: status::CANCEL,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![],
        },
        Frame::Settings {
            flags: 0,
            entries: (1..=8)
                .map(|id| Setting {
                    flags: (id % 3) as u8,
                    id,
                    value: id * 1000,
                })
                .collect(),
        },
        Frame::Ping { id: u32::MAX },
        Frame::GoAway {
            last_good_stream_id: 0,
            status: goaway::OK,
        },
        Frame::Headers {
            stream_id: 5,
            flags: 0,
            header_block: Bytes::from_static(b"xyz"),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 0x7fff_ffff,
        },
        Frame::Unknown {
            kind: 0x000b,
            flags: 0x40,
            payload: Bytes::from_static(b"ignored"),
        },
    ];
    let mut buf = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut buf).expect("encodes");
    }
    assert_eq!(decode_all(buf), frames);
}

#[test]
fn partial_input_needs_more_and_consumes_nothing() {
    let frames = [
        Frame::Ping { id: 1 },
        Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from(noise(3, 1000)),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            header_block: Bytes::from_static(b"abc"),
        },
    ];
    let decoder = Decoder::default();
    for frame in frames {
        let whole = encoded(&frame);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(decoder.decode(&mut part), Ok(None), "cut at {cut}");
            assert_eq!(part.len(), cut, "nothing consumed at {cut}");
        }
        // Fed one byte at a time, the frame comes out exactly once, at the last byte.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in whole.iter() {
            buf.extend_from_slice(&[*b]);
            if let Some(f) = decoder.decode(&mut buf).expect("decodes") {
                out.push(f);
            }
        }
        assert_eq!(out, vec![frame]);
    }
}

#[test]
fn oversized_frames_are_refused_on_their_header() {
    // A control frame announcing 1 MiB + 1: refused with only its 8 header bytes present.
    let mut buf = hex("8003 0001 00 100001");
    assert_eq!(
        Decoder::default().decode(&mut buf),
        Err(FrameError::TooLarge {
            kind: "SYN_STREAM",
            len: (1 << 20) + 1,
            limit: MAX_CONTROL_PAYLOAD,
        })
    );
    let small = Decoder::new(100, 100);
    let mut buf = hex("00000001 00 000065");
    let err = small.decode(&mut buf).expect_err("over the data limit");
    assert_eq!(
        err.to_string(),
        "DATA frame payload of 101 bytes exceeds the limit of 100 bytes"
    );
    // At the limit it is fine.
    let mut buf = encoded(&Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from(vec![0; 100]),
    });
    assert!(matches!(
        small.decode(&mut buf),
        Ok(Some(Frame::Data { .. }))
    ));
    // A payload the 24-bit field cannot carry is not encoded, and nothing is written.
    let mut out = BytesMut::new();
    let huge = Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from(vec![0; MAX_LENGTH + 1]),
    };
    assert!(matches!(
        huge.encode(&mut out),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(out.is_empty());
    let bad_id = Frame::RstStream {
        stream_id: 0x8000_0001,
        status: 1,
    };
    assert!(bad_id.encode(&mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn malformed_frames_are_errors() {
    let cases = [
        (
            "8002 0006 00 000004 00000001",
            "unsupported SPDY version 2 (only 3 is spoken)",
        ),
        (
            "8003 0006 00 000005 0000000100",
            "PING frame: wrong payload length",
        ),
        (
            "8003 0003 00 000004 00000001",
            "RST_STREAM frame: wrong payload length",
        ),
        (
            "8003 0003 00 000008 00000001 00000000",
            "RST_STREAM frame: status 0",
        ),
        (
            "8003 0003 00 000008 80000000 00000001",
            "RST_STREAM frame: stream id 0",
        ),
        (
            "8003 0007 00 000004 00000001",
            "GOAWAY frame: wrong payload length",
        ),
        (
            "8003 0009 00 000007 00000001 000000",
            "WINDOW_UPDATE frame: wrong payload length",
        ),
        (
            "8003 0004 00 00000c 00000002 01000007 00010000",
            "SETTINGS frame: entry count does not match the length",
        ),
        (
            "8003 0004 00 000002 0000",
            "SETTINGS frame: payload shorter than 4 bytes",
        ),
        (
            "8003 0001 00 000009 00000001 00000000 00",
            "SYN_STREAM frame: payload shorter than 10 bytes",
        ),
        (
            "8003 0001 00 00000a 00000000 00000000 0000",
            "SYN_STREAM frame: stream id 0",
        ),
        (
            "8003 0002 00 000003 000000",
            "SYN_REPLY frame: payload shorter than 4 bytes",
        ),
        ("00000000 00 000000", "DATA frame: stream id 0"),
    ];
    for (bytes, want) in cases {
        let err = Decoder::default().decode(&mut hex(bytes)).expect_err(bytes);
        assert_eq!(err.to_string(), want, "{bytes}");
    }
}

#[test]
fn reserved_bits_are_dropped() {
    // The X bit above a control frame's stream id is reserved and ignored.
    let mut buf = hex("8003 0002 00 000004 80000005 8003 0009 00 000008 80000001 80000010");
    assert_eq!(
        decode_all(buf.split()),
        [
            Frame::SynReply {
                stream_id: 5,
                flags: 0,
                header_block: Bytes::new(),
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 16,
            }
        ]
    );
}

/// Random bytes, and valid frames with random bytes flipped, never panic the decoder or the
/// header decoder behind it; each step either consumes input, waits, or fails.
#[test]
fn garbage_never_panics() {
    let decoder = Decoder::new(1 << 16, 1 << 16);
    let valid = hex(GO_CLIENT_CAPTURE);
    for seed in 0..2000u64 {
        let mut input = if seed % 2 == 0 {
            BytesMut::from(&noise(seed, (seed as usize * 7) % 300)[..])
        } else {
            let mut v = valid.to_vec();
            let flips = noise(seed, 8);
            for pair in flips.chunks(2) {
                let at = usize::from(pair[0]) * v.len() / 256;
                v[at] ^= pair[1] | 1;
            }
            BytesMut::from(&v[..])
        };
        let mut headers = HeaderDecoder::default();
        loop {
            let before = input.len();
            match decoder.decode(&mut input) {
                Ok(Some(Frame::SynStream { header_block, .. })) => {
                    let _ = headers.decode(&header_block);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
            assert!(input.len() < before, "a frame consumes input");
        }
    }
}

/// The Go client's bytes, frame by frame.
#[test]
fn go_client_capture_decodes_to_the_frames_it_sent() {
    let frames = decode_all(hex(GO_CLIENT_CAPTURE));
    assert_eq!(frames.len(), 6, "{frames:?}");
    let mut headers = HeaderDecoder::default();
    match &frames[0] {
        Frame::SynStream {
            stream_id: 1,
            flags: 0,
            associated_to: 0,
            priority: 0,
            header_block,
            ..
        } => {
            let h = headers.decode(header_block).expect("first block");
            assert_eq!(h.iter().collect::<Vec<_>>(), vec![("streamtype", "error")]);
        }
        other => panic!("first frame {other:?}"),
    }
    match &frames[1] {
        Frame::SynStream {
            stream_id: 3,
            flags: 0,
            header_block,
            ..
        } => {
            let h = headers.decode(header_block).expect("second block");
            assert_eq!(h.len(), 2);
            assert_eq!(h.get("streamtype"), Some("data"));
            // Go lowercases the name and joins the values with NUL.
            assert_eq!(h.get("x-multi"), Some("a\0b"));
            assert_eq!(h.values("x-multi").collect::<Vec<_>>(), vec!["a", "b"]);
        }
        other => panic!("second frame {other:?}"),
    }
    assert_eq!(
        frames[2..],
        [
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"hello from go"),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"oops"),
            },
            Frame::GoAway {
                last_good_stream_id: 0,
                status: goaway::OK,
            },
        ]
    );
}
