//! A fixed-size log-linear histogram of latencies in microseconds: about 3 % resolution, so
//! memory does not grow with the number of requests, and histograms of workers merge.

/// Sub-buckets per power of two: 2^5 = 32, so a bucket is at most 1/32 (~3 %) wide.
const SUB_BITS: u32 = 5;
const SUB_COUNT: u64 = 1 << SUB_BITS;

/// Latencies in microseconds, in log-linear buckets (the idea of HdrHistogram, much reduced):
/// values below 64 µs have a bucket each; above, every power of two is split into 32 equal
/// buckets. The bucket array grows only up to the largest value seen (at most 1,920 buckets).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub total: u64,
    pub max: u64,
    /// The sum of every value, for the mean (u128: no overflow however long the run).
    pub sum: u128,
}

impl Histogram {
    /// The bucket of a value.
    pub fn index(value: u64) -> usize {
        if value < 2 * SUB_COUNT {
            return value as usize;
        }
        let shift = (63 - value.leading_zeros()) - SUB_BITS;
        let mantissa = value >> shift; // in SUB_COUNT..2 * SUB_COUNT
        (shift as u64 * SUB_COUNT + mantissa) as usize
    }

    /// The largest value that falls in bucket `index`.
    fn highest_in(index: usize) -> u64 {
        let index = index as u64;
        if index < 2 * SUB_COUNT {
            return index;
        }
        let shift = index / SUB_COUNT - 1;
        let mantissa = index % SUB_COUNT + SUB_COUNT;
        let low = mantissa << shift;
        low.saturating_add((1u64 << shift) - 1)
    }

    pub fn record(&mut self, micros: u64) {
        let i = Self::index(micros);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
        self.sum += u128::from(micros);
    }

    /// The mean of every value recorded (exact, not from the buckets). 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.sum as f64 / self.total as f64
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// The value at percentile `p` (0–100): the top of the bucket holding that rank, never
    /// above the largest value recorded. 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::highest_in(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_is_exact() {
        let mut h = Histogram::default();
        assert_eq!(h.mean(), 0.0);
        for v in [100, 200, 600] {
            h.record(v);
        }
        assert_eq!(h.mean(), 300.0);
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in 0..200_000u64 {
            let i = Histogram::index(v);
            assert!(i == last || i == last + 1, "gap at {v}");
            assert!(Histogram::highest_in(i) >= v, "{v} above its bucket");
            // At most ~3 % wide.
            assert!(
                Histogram::highest_in(i) - v <= v / 32,
                "{v} bucket too wide"
            );
            last = i;
        }
        assert_eq!(Histogram::index(u64::MAX), 1919);
        assert_eq!(Histogram::highest_in(1919), u64::MAX);
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), 0);
        for v in 1..=1000 {
            h.record(v);
        }
        let near = |got: u64, want: u64| got >= want && got <= want + want / 32;
        assert!(near(h.percentile(50.0), 500), "{}", h.percentile(50.0));
        assert!(near(h.percentile(99.0), 990), "{}", h.percentile(99.0));
        assert_eq!(h.percentile(100.0), 1000);
        let mut other = Histogram::default();
        other.record(5_000_000);
        h.merge(&other);
        assert_eq!((h.total, h.max), (1001, 5_000_000));
        assert_eq!(h.percentile(100.0), 5_000_000);
    }
}
