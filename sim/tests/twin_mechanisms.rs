//! The twin runner's real fault mechanisms, each struck and observed for real: a link proxy
//! that is cut really holds the bytes (both ways or one), heals in order and delays by its
//! latency; a connection opened across a cut hangs until it heals; SIGSTOP really stops a
//! broker process from answering and SIGCONT brings it back; SIGKILL really ends it; packet
//! loss really drops segments, which TCP resends; a faked clock really moves a process's wall
//! clock.
#![cfg(not(madsim))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sim::real::proxy::{self, Dialler, Links};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server, and a proxy in front of it from node `client` to node `server`.
async fn echo_behind_proxy(links: Arc<Links>) -> std::net::SocketAddr {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 || c.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(proxy::serve(
        front,
        Dialler::Node("client".into()),
        "server".into(),
        upstream,
        links,
    ));
    addr
}

async fn round_trip(c: &mut TcpStream, what: &[u8], within: Duration) -> Option<Vec<u8>> {
    c.write_all(what).await.ok()?;
    let mut got = vec![0u8; what.len()];
    tokio::time::timeout(within, c.read_exact(&mut got))
        .await
        .ok()?
        .ok()?;
    Some(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_holds_the_bytes_and_delivers_them_in_order_when_it_heals() {
    let links = Links::new(7);
    let addr = echo_behind_proxy(links.clone()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        round_trip(&mut c, b"before", Duration::from_secs(5)).await,
        Some(b"before".to_vec())
    );
    links.cut("client", "server");
    links.cut("server", "client");
    assert_eq!(
        round_trip(&mut c, b"during", Duration::from_millis(500)).await,
        None,
        "nothing crosses a cut link"
    );
    links.heal("client", "server");
    links.heal("server", "client");
    // What was held arrives first, then what follows.
    assert_eq!(
        round_trip(&mut c, b"after!", Duration::from_secs(5)).await,
        Some(b"duringafter!"[..6].to_vec())
    );
    let mut rest = [0u8; 6];
    c.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"after!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_cut_lets_the_other_direction_through() {
    let links = Links::new(7);
    let addr = echo_behind_proxy(links.clone()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert!(round_trip(&mut c, b"x", Duration::from_secs(5))
        .await
        .is_some());
    // The answers are cut: the request still reaches the server (it echoes), the echo waits.
    links.cut("server", "client");
    assert_eq!(
        round_trip(&mut c, b"ping", Duration::from_millis(500)).await,
        None
    );
    links.heal("server", "client");
    let mut got = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("the held echo arrives once healed")
        .unwrap();
    assert_eq!(&got, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_across_a_cut_link_is_joined_only_when_it_heals() {
    let links = Links::new(7);
    links.cut("client", "server");
    let addr = echo_behind_proxy(links.clone()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        round_trip(&mut c, b"syn", Duration::from_millis(500)).await,
        None
    );
    links.heal("client", "server");
    let mut got = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("joined once healed")
        .unwrap();
    assert_eq!(&got, b"syn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_every_chunk_each_way() {
    let links = Links::new(7);
    let addr = echo_behind_proxy(links.clone()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    links.set_latency(Some((
        Duration::from_millis(150),
        Duration::from_millis(200),
    )));
    let began = Instant::now();
    assert!(round_trip(&mut c, b"slow", Duration::from_secs(5))
        .await
        .is_some());
    let took = began.elapsed();
    // There and back: at least twice the least delay.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    links.set_latency(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_really_drops_segments_and_tcp_resends_them_in_order() {
    if let Err(why) = sim::real::loss::available() {
        // `cargo xtask test` installs iptables (and says so when it cannot).
        eprintln!("NOTE: skipped, this machine cannot drop packets for real: {why}");
        return;
    }
    let links = Links::new(7);
    let addr = echo_behind_proxy(links.clone()).await;
    let loss = sim::real::loss::Loss::install(&[addr.port()]).unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    loss.set(Some(0.1));
    // 100 round trips of 1 KiB, each different: every byte comes back, in order (a segment
    // lost again and again waits out TCP's doubling retransmission timeout: minutes at most).
    for i in 0..100u32 {
        let what: Vec<u8> = (0..1024u32).map(|j| (i * 31 + j) as u8).collect();
        let back = round_trip(&mut c, &what, Duration::from_secs(120)).await;
        assert!(
            back.as_deref() == Some(&what[..]),
            "round trip {i}: {back:?}"
        );
    }
    let dropped = loss.dropped();
    // About 400 segments crossed (data and acknowledgements, both ways).
    assert!(
        dropped >= 5,
        "about 10 % of the segments dropped: {dropped}"
    );
    loss.set(None);
    assert_eq!(loss.dropped(), 0, "no rule: nothing more is dropped");
    for i in 0..20u8 {
        assert!(round_trip(&mut c, &[i; 64], Duration::from_secs(5))
            .await
            .is_some());
    }
    drop(loss);
    let rules = std::process::Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        !rules.contains(&format!("--dport {}", addr.port())),
        "the run's jumps are gone when it ends: {rules}"
    );
}

/// A process's wall clock (ms) as it sees it, started with `env`, minus this process's.
fn clock_seen_off_by_ms(env: &[(String, std::ffi::OsString)]) -> i64 {
    let out = std::process::Command::new("date")
        .arg("+%s%3N")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let seen: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    seen - now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faked_clock_really_skews_and_drifts_a_process_wall_clock() {
    if let Err(why) = sim::real::clock::library() {
        // `cargo xtask test` installs libfaketime (and says so when it cannot).
        eprintln!("NOTE: skipped, this machine cannot fake a clock: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clock = sim::real::clock::FakeClock::new(dir.path().join("b.faketime")).unwrap();
    let env = clock.env();
    let near = |off: i64, want: i64, slack: i64| (off - want).abs() <= slack;
    assert!(near(clock_seen_off_by_ms(&env), 0, 500));
    clock.set_offset_ms(3_600_000);
    let off = clock_seen_off_by_ms(&env);
    assert!(near(off, 3_600_000, 500), "an hour ahead: {off}");
    clock.set_offset_ms(-86_400_000);
    let off = clock_seen_off_by_ms(&env);
    assert!(near(off, -86_400_000, 500), "a day back: {off}");
    clock.set_offset_ms(0);
    // 50 % fast for two seconds: a second gained, and kept once the drift ends.
    clock.set_drift_ppm(500_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    clock.set_drift_ppm(0);
    let off = clock_seen_off_by_ms(&env);
    assert!(near(off, 1_000, 400), "a second gained: {off}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = clock_seen_off_by_ms(&env);
    assert!(
        near(later, off, 300),
        "no longer drifting: {off} then {later}"
    );
}

/// The broker binary `cargo xtask test` built, if the test runs under it.
fn broker_bin() -> Option<std::path::PathBuf> {
    let from_env = std::env::var_os("STILLWATER_BROKER_BIN").map(std::path::PathBuf::from);
    let beside = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("broker");
    from_env.or_else(|| beside.is_file().then_some(beside))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_silences_a_broker_and_sigcont_and_sigkill_are_real() {
    let Some(bin) = broker_bin() else {
        panic!("no broker binary: build it (cargo build -p broker) or set STILLWATER_BROKER_BIN");
    };
    let dir = tempfile::tempdir().unwrap();
    let port = sim::real::procs::free_port().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = sim::real::procs::BrokerProc::new(
        "broker-1".into(),
        bin,
        vec![
            "--listen".into(),
            addr.to_string(),
            "--metrics-listen".into(),
            String::new(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ],
        addr,
        addr,
        dir.path().join("data"),
        dir.path().join("broker.log"),
    );
    b.start().unwrap();
    let answers = |within: Duration| async move {
        // An ApiVersions v0 request: the broker answers it on any connection.
        let request: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0];
        let attempt = async {
            let mut c = TcpStream::connect(addr).await.ok()?;
            c.write_all(&request).await.ok()?;
            let mut len = [0u8; 4];
            c.read_exact(&mut len).await.ok()?;
            Some(())
        };
        tokio::time::timeout(within, attempt)
            .await
            .ok()
            .flatten()
            .is_some()
    };
    let mut up = false;
    for _ in 0..100 {
        if answers(Duration::from_millis(500)).await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "the broker never answered (see {})",
        b.log_path().display()
    );
    b.pause();
    assert!(
        !answers(Duration::from_secs(1)).await,
        "a stopped process answered"
    );
    b.resume();
    assert!(
        answers(Duration::from_secs(5)).await,
        "no answer after SIGCONT"
    );
    b.kill();
    assert!(!b.running());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a killed broker still listens"
    );
}
