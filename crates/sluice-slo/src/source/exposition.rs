//! A careful parser for the Prometheus text exposition format (version 0.0.4, and the sample
//! lines of OpenMetrics).
//!
//! Written here rather than taken from `prometheus-parse` because that crate splits label pairs
//! on `,` and `=` and so mangles quoted values that contain them (model paths, error messages);
//! the engine only needs samples, so the parser keeps names, labels and values and skips
//! comments, `# HELP`/`# TYPE` and `# EOF`. Malformed lines are an error with their line number,
//! never a panic.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpositionSample {
    /// Metric name including any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The value (may be ±Inf or NaN as written).
    pub value: f64,
}

/// A line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse metrics line {line}: {message}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Parses a whole exposition page into samples.
pub fn parse_exposition(text: &str) -> Result<Vec<ExpositionSample>, ExpositionError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|message| ExpositionError {
            line: i + 1,
            message,
        })?;
        out.push(sample);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<ExpositionSample, String> {
    let bytes = line.as_bytes();
    let name_end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
        .unwrap_or(bytes.len());
    let name = &line[..name_end];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(format!("invalid metric name in {line:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("missing value in {line:?}"))?;
    let value = parse_value(value)?;
    if let Some(ts) = fields.next()
        && ts.parse::<f64>().is_err()
    {
        return Err(format!("invalid timestamp {ts:?}"));
    }
    if let Some(extra) = fields.next() {
        // OpenMetrics exemplars start with '#'; anything else is garbage.
        if !extra.starts_with('#') {
            return Err(format!("unexpected trailing text {extra:?}"));
        }
    }
    Ok(ExpositionSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` and returns the text after the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || key.as_bytes()[0].is_ascii_digit()
        {
            return Err(format!("invalid label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        let mut chars = s.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {key:?} value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some(other) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err("unterminated escape".into()),
                },
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated value for label {key:?}"))?;
        labels.insert(key.to_owned(), value);
        s = s[end..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after label value".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|_| format!("invalid sample value {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_special_values() {
        let text = r#"# HELP llm_ttft_seconds Time to first token.
# TYPE llm_ttft_seconds histogram
llm_ttft_seconds_bucket{le="0.1"} 3
llm_ttft_seconds_bucket{le="+Inf"} 5
llm_ttft_seconds_sum 0.75
llm_model_info{model="hf:org/a,b=c@rev",quantization="q8_0",device="cpu"} 1 1700000000000
weird{msg="say \"hi\"\n\\ok",} NaN
up -Inf
# EOF
"#;
        let s = parse_exposition(text).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].name, "llm_ttft_seconds_bucket");
        assert_eq!(s[0].labels["le"], "0.1");
        assert_eq!(s[1].value, 5.0);
        assert_eq!(s[1].labels["le"], "+Inf");
        assert!(s[2].labels.is_empty());
        assert_eq!(s[3].labels["model"], "hf:org/a,b=c@rev");
        assert_eq!(s[4].labels["msg"], "say \"hi\"\n\\ok");
        assert!(s[4].value.is_nan());
        assert_eq!(s[5].value, f64::NEG_INFINITY);
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        for (text, line) in [
            ("ok 1\nbad{le=\"1\" 3\n", 2),
            ("x{le=1} 2", 1),
            ("x 1 2 3", 1),
            ("x", 1),
            ("x notanumber", 1),
            ("9x 1", 1),
            ("x{a=\"unterminated} 1", 1),
        ] {
            let err = parse_exposition(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }
}
