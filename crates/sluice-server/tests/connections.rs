//! The listener against slow and stalled clients and through a shutdown: the real binary, raw
//! sockets on loopback.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{client, metric, sigterm, spawn};
use serde_json::json;

/// How a slow client misbehaves.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends half of the headers.
    PartialHeaders,
    /// Sends the headers and 5 of the 100 body bytes it announced.
    ShortBody,
}

/// Opens a connection that misbehaves as `how`, then reads until the server answers or closes.
/// Returns what the server sent. The read timeout is far above the server's timeouts: it only
/// keeps a regression from hanging the suite.
fn misbehave(addr: &str, how: Slow) -> String {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    match how {
        Slow::Silent => {}
        Slow::PartialHeaders => {
            write!(
                sock,
                "POST /generate HTTP/1.1\r\nHost: {addr}\r\nContent-Ty"
            )
            .unwrap();
        }
        Slow::ShortBody => {
            write!(
                sock,
                "POST /generate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"pro"
            )
            .unwrap();
        }
    }
    let mut got = Vec::new();
    match sock.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{how:?}: the server held the connection ({e})"),
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Regression: partial headers or a short body held a connection for 40 s+, and 300 slow
/// connections were all held. Now each is cut off by the header or body read timeout, more
/// connections than the limit wait their turn, and a normal client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off_and_never_starve_the_server() {
    let (_proc, url) = spawn(
        &[
            "--header-read-timeout",
            "1s",
            "--body-read-timeout",
            "2s",
            "--max-connections",
            "16",
        ],
        &[],
    )
    .await;
    let addr = url.trim_start_matches("http://").to_string();
    let kinds = [Slow::Silent, Slow::PartialHeaders, Slow::ShortBody];
    // 45 misbehaving connections, about three times the connection limit.
    let slow: Vec<_> = (0..45)
        .map(|i| {
            let addr = addr.clone();
            let how = kinds[i % kinds.len()];
            (how, std::thread::spawn(move || misbehave(&addr, how)))
        })
        .collect();
    // A well-behaved client gets its answer while they are being cut off.
    let r = client()
        .post(format!("{url}/generate"))
        .json(&json!({"prompt": "served anyway", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (how, t) in slow {
        let answer = t.join().unwrap();
        match how {
            Slow::ShortBody => assert!(
                answer.starts_with("HTTP/1.1 408"),
                "a short body gets 408: {answer:?}"
            ),
            Slow::Silent | Slow::PartialHeaders => assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{how:?}: {answer:?}"
            ),
        }
    }
    let r = client()
        .post(format!("{url}/generate"))
        .json(&json!({"prompt": "and after", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Regression: on SIGTERM the listener closed at once and `/ready` never reported 503, so clients
/// saw connection-refused during every rollout. Now `/ready` fails first while requests are
/// still served for the drain delay, then the server exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_ready_off_but_keeps_serving_through_the_drain_delay() {
    let (mut proc, url) = spawn(&["--drain-delay", "20s", "--drain-timeout", "10s"], &[]).await;
    sigterm(&proc.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client()
            .get(format!("{url}/ready"))
            .send()
            .await
            .expect("still listening during the drain delay");
        if r.status() == 503 {
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(Instant::now() < deadline, "/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A client whose routing has not caught up yet is still served, on a new connection.
    let r = client()
        .post(format!("{url}/generate"))
        .json(&json!({"prompt": "late but welcome", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client()
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "liveness holds while draining: a restart now would drop requests"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// Issue: inference and admin shared one port, so any client of the Service could raise the
/// concurrency cap or unload the model. With `--admin-port` the admin API answers only there
/// and the inference port knows nothing of it (and the admin port serves no inference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lives_only_on_its_own_port() {
    let admin_port = common::free_port();
    let (_proc, url) = spawn(
        &[
            "--admin-port",
            &admin_port.to_string(),
            "--drain-delay",
            "0s",
        ],
        &[],
    )
    .await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    let limits = json!({"max_tokens": 7});
    let on_main = client()
        .put(format!("{url}/admin/limits"))
        .json(&limits)
        .send()
        .await
        .unwrap();
    assert_eq!(on_main.status(), 404, "the inference port has no admin API");
    for path in ["/model/unload", "/model/load"] {
        let r = client()
            .post(format!("{url}{path}"))
            .json(&json!({"model": "builtin:tiny"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} on the inference port");
    }
    let on_admin = client()
        .put(format!("{admin}/admin/limits"))
        .json(&limits)
        .send()
        .await
        .unwrap();
    assert_eq!(on_admin.status(), 200);
    let generate = |base: String| async move {
        client()
            .post(format!("{base}/generate"))
            .json(&json!({"prompt": "x", "max_tokens": 100}))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        generate(admin.clone()).await.status(),
        404,
        "no inference on the admin port"
    );
    let r = generate(url.clone()).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["generated_tokens"].as_u64().unwrap() <= 7,
        "the cap set through the admin port applies: {v}"
    );
}

/// TTFT counts from arrival, as the client's clock does: a body that takes 2 s to arrive is in
/// the request's TTFT and queue time (it used to start after tokenization, a few milliseconds).
/// The server stamps arrival when it has parsed the headers, which a loaded machine (the other
/// tests of this binary flood connections) can delay, so the check allows half the delay for
/// that and still tells the two behaviours apart by two orders of magnitude.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_counts_from_arrival_including_a_slow_body() {
    const BODY_DELAY: Duration = Duration::from_secs(2);
    let counted = BODY_DELAY.as_secs_f64() / 2.0;
    let (_proc, url) = spawn(&["--body-read-timeout", "30s"], &[]).await;
    let addr = url.trim_start_matches("http://").to_string();
    let body = json!({"prompt": "hello", "max_tokens": 2}).to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut sock = TcpStream::connect(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        write!(
            sock,
            "POST /generate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        sock.flush().unwrap();
        // The delay is the scenario, not a wait for a condition: the server cannot have the
        // body before it is sent.
        std::thread::sleep(BODY_DELAY);
        sock.write_all(body.as_bytes()).unwrap();
        let mut got = String::new();
        sock.read_to_string(&mut got).unwrap();
        got
    })
    .await
    .unwrap();
    let json_at = answer.find("\r\n\r\n").expect("a response with a body") + 4;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer[json_at..]).unwrap();
    let t = &v["timings"];
    for key in ["queue_seconds", "ttft_seconds", "total_seconds"] {
        let secs = t[key].as_f64().unwrap();
        assert!(
            secs >= counted,
            "{key} = {secs} s leaves out the {BODY_DELAY:?} the body took: {v}"
        );
    }
    let sum = metric(&url, "llm_ttft_seconds_sum").await;
    assert!(sum >= counted, "llm_ttft_seconds_sum = {sum}");
}
