//! Stop-sequence matching over arbitrary UTF-8 text cut at arbitrary token boundaries, through
//! the engine's own [`StopText`]. Beyond "never panics" it checks the streaming contract: the
//! pieces sent add up to a prefix of the text that contains no stop sequence, and the text is
//! cut only where a stop sequence starts.
#![no_main]

use libfuzzer_sys::{arbitrary, fuzz_target};
use sluice_server::engine::StopText;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    text: String,
    stops: Vec<String>,
    /// Token lengths in characters (0 is read as 1), cycled over the text.
    cuts: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let stops: Vec<String> = input.stops.into_iter().take(8).collect();
    let chars: Vec<char> = input.text.chars().collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut cut = input.cuts.iter().cycle();
    while at < chars.len() {
        let len = cut.next().map_or(1, |&c| usize::from(c.max(1)));
        let end = (at + len).min(chars.len());
        pieces.push(chars[at..end].iter().collect::<String>());
        at = end;
    }

    let mut state = StopText::default();
    let mut sent = String::new();
    let mut stopped = false;
    for (i, piece) in pieces.iter().enumerate() {
        stopped = state.push(piece, &stops);
        let last = i + 1 == pieces.len();
        sent.push_str(&state.take(stopped || last, &stops));
        if stopped {
            break;
        }
    }

    assert!(
        input.text.starts_with(&sent),
        "sent text {sent:?} is not a prefix of {:?}",
        input.text
    );
    assert_eq!(
        sent,
        state.as_str(),
        "streamed pieces differ from the final text"
    );
    for s in stops.iter().filter(|s| !s.is_empty()) {
        assert!(
            !sent.contains(s.as_str()),
            "sent {sent:?} contains stop {s:?}"
        );
    }
    let rest = &input.text[sent.len()..];
    if stopped {
        assert!(
            stops
                .iter()
                .any(|s| !s.is_empty() && rest.starts_with(s.as_str())),
            "cut at {} but no stop sequence starts there",
            sent.len()
        );
    } else {
        assert_eq!(sent, input.text, "unstopped stream lost text");
    }
});
