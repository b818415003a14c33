//! Azure LLM inference trace (`TIMESTAMP,ContextTokens,GeneratedTokens`) parsing and shaping for
//! replay: arrival offsets relative to the first replayed row, scaled in time, with token caps so a
//! production trace can be replayed against a tiny model.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime};
use thiserror::Error;

/// One request of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// When to send it, relative to the start of the replay (already time-scaled).
    pub at: Duration,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
}

/// How a trace is cut and scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceOptions {
    /// Multiplies every inter-arrival time (0.1 = ten times faster).
    pub time_scale: f64,
    /// Rows skipped before replaying.
    pub skip: usize,
    /// Rows replayed at most.
    pub limit: Option<usize>,
    pub max_prompt_tokens: Option<u32>,
    pub max_tokens: u32,
}

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("failed to open trace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "failed to read trace {name}: header must contain TIMESTAMP, ContextTokens and GeneratedTokens (found: {found})"
    )]
    Header { name: String, found: String },
    #[error("failed to read trace {name} line {line}: {message}")]
    Row {
        name: String,
        line: u64,
        message: String,
    },
    #[error("failed to read trace {name}: no requests to replay ({reason})")]
    Empty { name: String, reason: String },
}

/// Reads and shapes a trace file.
pub fn load_trace(path: &Path, opts: &TraceOptions) -> Result<Vec<TraceRequest>, TraceError> {
    let file = std::fs::File::open(path).map_err(|source| TraceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse_trace(file, &path.display().to_string(), opts)
}

/// Parses trace CSV from any reader; `name` only labels error messages.
pub fn parse_trace<R: Read>(
    reader: R,
    name: &str,
    opts: &TraceOptions,
) -> Result<Vec<TraceRequest>, TraceError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let header = csv.headers().map_err(|e| TraceError::Row {
        name: name.to_string(),
        line: 1,
        message: e.to_string(),
    })?;
    let find = |col: &str| header.iter().position(|h| h.eq_ignore_ascii_case(col));
    let (Some(ts_col), Some(ctx_col), Some(gen_col)) = (
        find("TIMESTAMP"),
        find("ContextTokens"),
        find("GeneratedTokens"),
    ) else {
        return Err(TraceError::Header {
            name: name.to_string(),
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    };

    let row_err = |line: u64, message: String| TraceError::Row {
        name: name.to_string(),
        line,
        message,
    };
    let mut rows: Vec<(f64, u32, u32, u64)> = Vec::new();
    for (i, record) in csv.records().enumerate() {
        // Header is line 1; csv's own position is used when it has one.
        let record = record.map_err(|e| {
            let line = e.position().map_or(i as u64 + 2, |p| p.line());
            row_err(line, e.to_string())
        })?;
        let line = record.position().map_or(i as u64 + 2, |p| p.line());
        if i < opts.skip {
            continue;
        }
        if opts.limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
        let ts = parse_timestamp(&record[ts_col]).map_err(|m| row_err(line, m))?;
        let tokens = |col: usize, what: &str| {
            record[col].parse::<u32>().map_err(|_| {
                row_err(
                    line,
                    format!(
                        "{what} must be a non-negative integer, got {:?}",
                        &record[col]
                    ),
                )
            })
        };
        rows.push((
            ts,
            tokens(ctx_col, "ContextTokens")?,
            tokens(gen_col, "GeneratedTokens")?,
            line,
        ));
    }
    if rows.is_empty() {
        let reason = if opts.skip > 0 {
            format!("the file has no data rows after skipping {}", opts.skip)
        } else {
            "the file has no data rows".to_string()
        };
        return Err(TraceError::Empty {
            name: name.to_string(),
            reason,
        });
    }

    // Replay is by time, so an unsorted trace is replayed in timestamp order.
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = rows[0].0;
    rows.into_iter()
        .map(|(ts, ctx, generated, line)| {
            // Timestamps far apart (1e300 and -1e300 both parse) overflow a Duration; that is a
            // broken trace, not a reason to panic.
            let at = Duration::try_from_secs_f64((ts - t0) * opts.time_scale).map_err(|_| {
                row_err(
                    line,
                    format!(
                        "TIMESTAMP is {:.3e} s after the first request, beyond any replay",
                        ts - t0
                    ),
                )
            })?;
            Ok(TraceRequest {
                at,
                prompt_tokens: opts
                    .max_prompt_tokens
                    .map_or(ctx, |cap| ctx.min(cap))
                    .max(1),
                max_tokens: generated.min(opts.max_tokens).max(1),
            })
        })
        .collect()
}

/// Seconds since the Unix epoch (or since an arbitrary origin for numeric timestamps).
fn parse_timestamp(s: &str) -> Result<f64, String> {
    if let Ok(v) = s.parse::<f64>()
        && v.is_finite()
    {
        return Ok(v);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_micros() as f64 / 1e6);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(dt.and_utc().timestamp_micros() as f64 / 1e6);
        }
    }
    Err(format!(
        "TIMESTAMP {s:?} is not a date-time like 2023-11-16 18:15:46.6805900 or a number of seconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TraceOptions {
        TraceOptions {
            time_scale: 1.0,
            skip: 0,
            limit: None,
            max_prompt_tokens: None,
            max_tokens: 10_000,
        }
    }

    const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,55
2023-11-16 18:15:51.3910170,91,16
";

    fn ms(v: &TraceRequest) -> u128 {
        v.at.as_millis()
    }

    #[test]
    fn parses_the_azure_format_relative_to_the_first_row() {
        let r = parse_trace(AZURE.as_bytes(), "t", &opts()).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().map(ms).collect::<Vec<_>>(), [0, 4314, 4541, 4710]);
        assert_eq!((r[0].prompt_tokens, r[0].max_tokens), (374, 44));
        assert_eq!((r[3].prompt_tokens, r[3].max_tokens), (91, 16));
    }

    /// Regression (found writing the `trace_csv` fuzz target): timestamps too far apart for a
    /// `Duration` panicked in `Duration::from_secs_f64`.
    #[test]
    fn timestamps_too_far_apart_are_a_row_error_not_a_panic() {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n-1e300,1,1\n1e300,2,2\n";
        let err = parse_trace(csv.as_bytes(), "t", &opts()).unwrap_err();
        assert!(
            matches!(err, TraceError::Row { line: 3, .. }),
            "unexpected error: {err}"
        );
    }

    #[test]
    fn scales_caps_skips_and_limits() {
        let o = TraceOptions {
            time_scale: 0.5,
            skip: 1,
            limit: Some(2),
            max_prompt_tokens: Some(100),
            max_tokens: 50,
        };
        let r = parse_trace(AZURE.as_bytes(), "t", &o).unwrap();
        assert_eq!(r.len(), 2);
        // Rows 2 and 3: 0.2273 s apart, halved.
        assert_eq!(r.iter().map(ms).collect::<Vec<_>>(), [0, 113]);
        assert_eq!((r[0].prompt_tokens, r[0].max_tokens), (100, 50));
        assert_eq!((r[1].prompt_tokens, r[1].max_tokens), (100, 50));
    }

    #[test]
    fn accepts_numeric_and_rfc3339_timestamps_and_sorts() {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n2.5,10,0\n1.0,20,3\n";
        let r = parse_trace(csv.as_bytes(), "t", &opts()).unwrap();
        assert_eq!(r.iter().map(ms).collect::<Vec<_>>(), [0, 1500]);
        // A zero-token row still asks for one token.
        assert_eq!(r[1].max_tokens, 1);
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16T18:15:46Z,1,1\n2023-11-16T18:15:47.5+00:00,1,1\n";
        let r = parse_trace(csv.as_bytes(), "t", &opts()).unwrap();
        assert_eq!(ms(&r[1]), 1500);
    }

    #[test]
    fn wrong_header_is_named() {
        let err = parse_trace("time,a,b\n1,2,3\n".as_bytes(), "bad.csv", &opts()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.csv") && msg.contains("found: time,a,b"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47,abc,1\n";
        let msg = parse_trace(csv.as_bytes(), "t.csv", &opts())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 3") && msg.contains("ContextTokens"),
            "{msg}"
        );

        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n";
        let msg = parse_trace(csv.as_bytes(), "t.csv", &opts())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2") && msg.contains("yesterday"), "{msg}");

        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n1,2\n";
        let msg = parse_trace(csv.as_bytes(), "t.csv", &opts())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");

        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n1,-5,2\n";
        assert!(parse_trace(csv.as_bytes(), "t.csv", &opts()).is_err());
    }

    #[test]
    fn empty_trace_is_an_error() {
        let msg = parse_trace(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n".as_bytes(),
            "e.csv",
            &opts(),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("no data rows"), "{msg}");
        assert!(parse_trace("".as_bytes(), "e.csv", &opts()).is_err());
    }

    #[test]
    #[ignore = "data tier: needs the shared Azure trace beside the checkout; scripts/test.sh runs it"]
    fn the_shared_azure_trace_parses() {
        let path = sluice_testkit::azure_trace().expect(
            "the Azure trace beside the checkout (../shared/data) or at SLUICE_AZURE_TRACE",
        );
        let r = load_trace(&path, &opts()).unwrap();
        assert!(r.len() > 10_000);
        assert!(r.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
