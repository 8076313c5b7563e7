//! What the payload codec costs per payload: AES-256-GCM encode (seal) + decode (open) of a
//! `json/plain` payload of 1 KB, 64 KB and 1 MB through `Codec::encode` / `Codec::decode`, as
//! the SDK's data converter calls them for every payload. Median of many round trips, reported as
//! µs per payload and ns per KB.
//!
//! ```text
//! cargo bench -p flock --bench codec
//! ```
//!
//! The flows/s comparison with the codec on and off is `temporal_chain`'s `b-codec` and `c-codec`
//! configurations (BENCHMARKS.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use flock::codec::{Codec, CodecKeys, Payload};
use futures::executor::block_on;

fn payload(bytes: usize) -> Payload {
    // a JSON string of `bytes` characters, as an agent's input of that size would be
    let text: String = (0..bytes - 2)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    Payload::json(&serde_json::Value::String(text))
}

/// The median of `rounds` timings of `runs` calls of `f`, per call.
fn median_per_call(rounds: usize, runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                f();
            }
            start.elapsed() / runs as u32
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let codec = Codec::new(CodecKeys::new([("bench", [7u8; 32])]).expect("a key"));
    println!(
        "codec: AES-256-GCM, median of 15 rounds; {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "\n| payload | encode µs | decode µs | encode + decode µs | encode + decode ns per KB |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, bytes, runs) in [
        ("1 KB", 1024, 20_000),
        ("64 KB", 64 * 1024, 400),
        ("1 MB", 1024 * 1024, 25),
    ] {
        let plain = payload(bytes);
        let sealed = block_on(codec.encode(vec![plain.clone()])).expect("encodes");
        let opened = block_on(codec.decode(sealed.clone())).expect("decodes");
        assert!(
            opened == vec![plain.clone()],
            "the round trip changed the payload"
        );
        let encode = median_per_call(15, runs, || {
            black_box(block_on(codec.encode(vec![black_box(plain.clone())])).expect("encodes"));
        });
        let decode = median_per_call(15, runs, || {
            black_box(block_on(codec.decode(black_box(sealed.clone()))).expect("decodes"));
        });
        // the clones are part of both timings, as the SDK hands the codec owned payloads too
        let both = encode + decode;
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.0} |",
            encode.as_secs_f64() * 1e6,
            decode.as_secs_f64() * 1e6,
            both.as_secs_f64() * 1e6,
            both.as_secs_f64() * 1e9 / (bytes as f64 / 1024.0)
        );
    }
}
