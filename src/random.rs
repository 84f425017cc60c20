//! Numbers that differ on every call, for ids (request, trace and span ids) and for the
//! choices of fault injection and balancing. SplitMix64's finaliser over a counter started
//! from a per-process seed: cheap, lock-free, and never the same twice within a process (the
//! finaliser is invertible). Not for anything secret.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A 64-bit number, different on every call.
pub fn next_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    mix(process_seed().wrapping_add(n))
}

/// A number in `0.0..1.0`: the top 53 bits of `next_u64`, as many as an `f64` holds exactly.
pub fn unit() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A per-process seed from the clock and pid, so two processes do not hand out the same ids.
fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    })
}

/// SplitMix64's finaliser: spreads consecutive numbers over all 64 bits. Invertible, so
/// distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_differ_and_units_are_fractions() {
        let (a, b) = (next_u64(), next_u64());
        assert_ne!(a, b);
        for _ in 0..1000 {
            let u = unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn mix_spreads_neighbours_apart() {
        assert_eq!(mix(0), 0);
        assert_ne!(mix(1), mix(2));
        assert!(
            (mix(1) ^ mix(2)).count_ones() > 16,
            "more than a few bits differ"
        );
    }
}
