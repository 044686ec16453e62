//! A sliding window cut into fixed time buckets, kept in a ring of counters.

use aiproxy_domain::UnixMillis;

/// What a ring counts; every bucket holds both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    Requests,
    Tokens,
}

/// Request and token counts of one sliding window of `window_ms`, in buckets of `bucket_ms`.
///
/// Bucket `b` covers `[b * bucket_ms, (b + 1) * bucket_ms)`. An event in bucket `b` counts
/// until `(b + 1) * bucket_ms + window_ms`: that is after the exact sliding-window expiry
/// (`at + window_ms`) by between 1 ms and one whole bucket, never before it. The buckets that
/// count at `now` are therefore the `window_ms / bucket_ms + 1` newest ones ending with
/// `bucket(now)`, which is why the ring has one slot more than the window has buckets.
///
/// Counts saturate instead of overflowing, and the running sums move by exactly what the
/// slots moved, so a sum always equals the sum of its live slots and can never underflow.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    bucket_ms: i64,
    window_ms: i64,
    /// The newest live bucket: the bucket of the latest `now` seen. Time never goes back
    /// inside a ring, so an earlier `now` is treated as this bucket.
    head: i64,
    requests: Box<[u32]>,
    tokens: Box<[u64]>,
    sum_requests: u64,
    sum_tokens: u64,
    /// The newest bucket that ever received a request (or tokens), for the reset time without
    /// a scan. Meaningless while the matching sum is zero.
    newest_request_bucket: i64,
    newest_token_bucket: i64,
}

impl Ring {
    /// An empty ring whose newest bucket holds `now`. `window_ms` must be a positive
    /// multiple of `bucket_ms`.
    pub(crate) fn new(window_ms: i64, bucket_ms: i64, now: UnixMillis) -> Self {
        debug_assert!(bucket_ms > 0 && window_ms > 0 && window_ms % bucket_ms == 0);
        let slots = usize::try_from(window_ms / bucket_ms + 1).unwrap_or(1);
        Self {
            bucket_ms,
            window_ms,
            head: now.0.div_euclid(bucket_ms),
            requests: vec![0; slots].into_boxed_slice(),
            tokens: vec![0; slots].into_boxed_slice(),
            sum_requests: 0,
            sum_tokens: 0,
            newest_request_bucket: i64::MIN,
            newest_token_bucket: i64::MIN,
        }
    }

    fn len(&self) -> i64 {
        // At most a few thousand slots, so the cast cannot truncate.
        self.requests.len() as i64
    }

    fn slot(&self, bucket: i64) -> usize {
        // `rem_euclid` of a positive length is in `0..len`, so the cast is exact.
        bucket.rem_euclid(self.len()) as usize
    }

    fn oldest_live_bucket(&self) -> i64 {
        self.head - self.len() + 1
    }

    /// When an event recorded in `bucket` stops counting.
    fn expiry(&self, bucket: i64) -> i64 {
        bucket
            .saturating_add(1)
            .saturating_mul(self.bucket_ms)
            .saturating_add(self.window_ms)
    }

    /// Moves the window forward to `now`, dropping the buckets that left it. An earlier `now`
    /// changes nothing: dropping is never undone and never done early.
    pub(crate) fn advance(&mut self, now: UnixMillis) {
        let target = now.0.div_euclid(self.bucket_ms);
        if target <= self.head {
            return;
        }
        if target - self.head >= self.len() {
            self.requests.fill(0);
            self.tokens.fill(0);
            self.sum_requests = 0;
            self.sum_tokens = 0;
        } else {
            for bucket in self.head + 1..=target {
                let slot = self.slot(bucket);
                self.sum_requests -= u64::from(self.requests[slot]);
                self.sum_tokens -= self.tokens[slot];
                self.requests[slot] = 0;
                self.tokens[slot] = 0;
            }
        }
        self.head = target;
    }

    /// Counts an event that happened `at`. Call [`Ring::advance`] first. An event older than
    /// the window is ignored; one later than the newest bucket (a clock that stepped back)
    /// counts in the newest bucket.
    pub(crate) fn add(&mut self, at: UnixMillis, requests: u32, tokens: u64) {
        let bucket = at.0.div_euclid(self.bucket_ms).min(self.head);
        if bucket < self.oldest_live_bucket() {
            return;
        }
        let slot = self.slot(bucket);
        if requests > 0 {
            let before = self.requests[slot];
            let after = before.saturating_add(requests);
            self.requests[slot] = after;
            self.sum_requests += u64::from(after - before);
            self.newest_request_bucket = self.newest_request_bucket.max(bucket);
        }
        if tokens > 0 {
            // Capping at what the sum can still take keeps every slot at most the sum, so
            // neither can overflow.
            let accepted = tokens.min(u64::MAX - self.sum_tokens);
            self.tokens[slot] += accepted;
            self.sum_tokens += accepted;
            self.newest_token_bucket = self.newest_token_bucket.max(bucket);
        }
    }

    /// What the live buckets hold, as of the last [`Ring::advance`].
    pub(crate) fn sum(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Requests => self.sum_requests,
            Metric::Tokens => self.sum_tokens,
        }
    }

    /// Milliseconds from `now` until `sum(metric) + extra < limit` holds, if buckets only
    /// expire from here on (nothing new is recorded and `extra` stays). `Some(0)` when it holds
    /// already; `None` when expiry alone can never make it hold (`extra >= limit`).
    pub(crate) fn millis_until_below(
        &self,
        metric: Metric,
        limit: u64,
        extra: u64,
        now: UnixMillis,
    ) -> Option<u64> {
        if extra >= limit {
            return None;
        }
        let mut remaining = self.sum(metric);
        if remaining.saturating_add(extra) < limit {
            return Some(0);
        }
        // Stepping the slot index by hand spares a division per bucket on the refusal path.
        let oldest = self.oldest_live_bucket();
        let mut slot = self.slot(oldest);
        for bucket in oldest..=self.head {
            remaining -= match metric {
                Metric::Requests => u64::from(self.requests[slot]),
                Metric::Tokens => self.tokens[slot],
            };
            if remaining.saturating_add(extra) < limit {
                return Some(millis_between(now, self.expiry(bucket)));
            }
            slot += 1;
            if slot == self.requests.len() {
                slot = 0;
            }
        }
        // Unreachable: once every bucket has expired `remaining` is 0 and `extra < limit`.
        None
    }

    /// Milliseconds from `now` until everything in the window has expired; 0 when empty.
    pub(crate) fn millis_until_empty(&self, metric: Metric, now: UnixMillis) -> u64 {
        let newest = match metric {
            Metric::Requests => self.newest_request_bucket,
            Metric::Tokens => self.newest_token_bucket,
        };
        if self.sum(metric) == 0 {
            return 0;
        }
        millis_between(now, self.expiry(newest))
    }
}

fn millis_between(now: UnixMillis, later: i64) -> u64 {
    u64::try_from(later.saturating_sub(now.0)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_at(now: i64) -> Ring {
        // A 10-second window in 1-second buckets: 11 slots.
        Ring::new(10_000, 1_000, UnixMillis(now))
    }

    #[test]
    fn an_event_counts_until_its_bucket_end_plus_the_window() {
        let mut ring = ring_at(1_500);
        ring.add(UnixMillis(1_500), 1, 7);
        for (now, expected) in [(11_500, 1), (11_999, 1), (12_000, 0)] {
            ring.advance(UnixMillis(now));
            assert_eq!(ring.sum(Metric::Requests), expected, "at {now}");
            assert_eq!(ring.sum(Metric::Tokens), expected * 7, "at {now}");
        }
    }

    #[test]
    fn a_long_gap_clears_everything() {
        let mut ring = ring_at(0);
        ring.add(UnixMillis(0), 3, 30);
        ring.advance(UnixMillis(5_000));
        ring.add(UnixMillis(5_000), 2, 20);
        ring.advance(UnixMillis(1_000_000));
        assert_eq!(ring.sum(Metric::Requests), 0);
        assert_eq!(ring.sum(Metric::Tokens), 0);
        // The cleared slots must not resurface when the ring turns again.
        ring.advance(UnixMillis(1_005_000));
        assert_eq!(ring.sum(Metric::Requests), 0);
    }

    #[test]
    fn past_events_land_in_their_own_bucket_and_stale_ones_are_ignored() {
        let mut ring = ring_at(20_000);
        ring.add(UnixMillis(9_999), 1, 0); // Expired at 20 000.
        ring.add(UnixMillis(10_000), 1, 0); // Counts until 21 000.
        ring.add(UnixMillis(15_000), 1, 0); // Counts until 26 000.
        assert_eq!(ring.sum(Metric::Requests), 2);
        ring.advance(UnixMillis(21_000));
        assert_eq!(ring.sum(Metric::Requests), 1);
    }

    #[test]
    fn an_event_stamped_after_the_head_counts_in_the_head() {
        let mut ring = ring_at(5_000);
        ring.add(UnixMillis(9_000), 1, 0);
        ring.advance(UnixMillis(15_999));
        assert_eq!(ring.sum(Metric::Requests), 1);
        ring.advance(UnixMillis(16_000));
        assert_eq!(ring.sum(Metric::Requests), 0);
    }

    #[test]
    fn time_until_below_walks_from_the_oldest_bucket() {
        let mut ring = ring_at(0);
        ring.add(UnixMillis(0), 2, 0);
        ring.advance(UnixMillis(3_000));
        ring.add(UnixMillis(3_000), 1, 0);
        let now = UnixMillis(4_200);
        ring.advance(now);
        // Three requests against a limit of 3: the first bucket frees two at 11 000.
        assert_eq!(
            ring.millis_until_below(Metric::Requests, 3, 0, now),
            Some(6_800)
        );
        // Against a limit of 1 the bucket of 3 000 must go too, at 14 000.
        assert_eq!(
            ring.millis_until_below(Metric::Requests, 1, 0, now),
            Some(9_800)
        );
        assert_eq!(
            ring.millis_until_below(Metric::Requests, 4, 0, now),
            Some(0)
        );
        assert_eq!(ring.millis_until_below(Metric::Requests, 4, 4, now), None);
        assert_eq!(ring.millis_until_empty(Metric::Requests, now), 9_800);
        assert_eq!(ring.millis_until_empty(Metric::Tokens, now), 0);
    }

    #[test]
    fn counts_saturate_without_breaking_the_sums() {
        let mut ring = ring_at(0);
        ring.add(UnixMillis(0), u32::MAX, u64::MAX);
        ring.add(UnixMillis(0), 5, 5);
        ring.advance(UnixMillis(1_000));
        ring.add(UnixMillis(1_000), 0, 5);
        assert_eq!(ring.sum(Metric::Requests), u64::from(u32::MAX));
        assert_eq!(ring.sum(Metric::Tokens), u64::MAX);
        ring.advance(UnixMillis(11_000));
        assert_eq!(ring.sum(Metric::Requests), 0);
        assert_eq!(ring.sum(Metric::Tokens), 0);
    }
}
