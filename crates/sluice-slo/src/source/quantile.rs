//! Histogram quantiles computed the way PromQL's `histogram_quantile` does, so the scrape source
//! and Prometheus report the same TTFT P95 for the same data.

/// The `q`-quantile of cumulative buckets `(upper_bound, cumulative_count)`.
///
/// Follows Prometheus (`promql/quantile.go`): buckets are sorted by upper bound, the last must
/// be `+Inf`, non-monotonic counts (possible when buckets are summed across targets scraped at
/// different moments) are raised to their predecessor, the rank `q * total` is located and the
/// value is interpolated linearly inside its bucket, the first bucket starting at 0. A rank that
/// falls into the `+Inf` bucket yields the highest finite bound. Returns None where PromQL
/// returns NaN: fewer than two buckets, no `+Inf` bucket, no observations, or `q` outside 0..=1.
pub fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || buckets.len() < 2 {
        return None;
    }
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().map(|x| x.0) != Some(f64::INFINITY) {
        return None;
    }
    for i in 1..b.len() {
        if b[i].1 < b[i - 1].1 {
            b[i].1 = b[i - 1].1;
        }
    }
    let total = b[b.len() - 1].1;
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut rank = q * total;
    let idx = b.iter().position(|x| x.1 >= rank).unwrap_or(b.len() - 1);
    if idx == b.len() - 1 {
        return Some(b[b.len() - 2].0);
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return Some(b[0].0);
    }
    let (start, mut count) = if idx == 0 {
        (0.0, b[0].1)
    } else {
        rank -= b[idx - 1].1;
        (b[idx - 1].0, b[idx].1 - b[idx - 1].1)
    };
    let end = b[idx].0;
    if count <= 0.0 {
        count = 1.0;
        rank = 1.0;
    }
    Some(start + (end - start) * (rank / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn interpolates_within_the_bucket() {
        // 100 observations: 50 <= 0.1, 90 <= 0.5, 100 <= 1.
        let b = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)];
        // rank 95 lies in (0.5, 1]: 0.5 + 0.5 * (5 / 10) = 0.75
        assert!((bucket_quantile(0.95, &b).unwrap() - 0.75).abs() < 1e-12);
        // rank 25 in the first bucket: 0 + 0.1 * 25/50
        assert!((bucket_quantile(0.25, &b).unwrap() - 0.05).abs() < 1e-12);
        // rank 90 is exactly the top of (0.1, 0.5]
        assert!((bucket_quantile(0.9, &b).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn rank_in_the_inf_bucket_returns_the_highest_finite_bound() {
        let b = [(0.1, 1.0), (1.0, 2.0), (INF, 10.0)];
        assert_eq!(bucket_quantile(0.95, &b), Some(1.0));
    }

    #[test]
    fn unsorted_and_non_monotonic_input_is_repaired() {
        let b = [(INF, 10.0), (1.0, 10.0), (0.5, 11.0)];
        // after sort + monotonic fix: (0.5,11),(1,11),(inf,11) -> rank 5.5 in first bucket
        let v = bucket_quantile(0.5, &b).unwrap();
        assert!((v - 0.25).abs() < 1e-12);
    }

    #[test]
    fn nan_cases_are_none() {
        assert_eq!(bucket_quantile(0.95, &[(INF, 0.0), (1.0, 0.0)]), None);
        assert_eq!(bucket_quantile(0.95, &[(1.0, 3.0), (2.0, 5.0)]), None);
        assert_eq!(bucket_quantile(0.95, &[(INF, 3.0)]), None);
        assert_eq!(bucket_quantile(1.5, &[(1.0, 3.0), (INF, 5.0)]), None);
    }
}
