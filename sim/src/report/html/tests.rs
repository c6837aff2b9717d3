use super::*;
use crate::findings::Finding;
use crate::history::{Send, SendOutcome};
use bytes::Bytes;

fn line(at_s: f64, node: &str, level: &str, message: &str, fields: &[(&str, &str)]) -> LogLine {
    LogLine {
        at_s,
        node: node.into(),
        level: level.into(),
        target: "broker::replication".into(),
        message: message.into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn send(i: usize, at: f64, partition: i32, outcome: SendOutcome) -> Op {
    Op::Send(Send {
        producer: i % 3,
        partition,
        value: Bytes::from(format!("v{i}|....")),
        idempotence: None,
        attempt: 1,
        acks: -1,
        broker: i % 2,
        invoked_s: at,
        completed_s: at + 0.01,
        outcome,
    })
}

fn run(history: Vec<Op>, findings: Vec<Finding>) -> RunReport {
    RunReport {
        scenario: "t".into(),
        seed: 3,
        findings,
        stats: Default::default(),
        acked: 0,
        refused: 0,
        unknown: 0,
        polls: 0,
        simulated_s: 120.0,
        wall_s: 1.0,
        expected: crate::scenario::Expected::Pass,
        faults: Vec::new(),
        history,
        trace: Vec::new(),
        coverage: Vec::new(),
        figures: Vec::new(),
        config: Vec::new(),
        brokers: vec!["broker-1".into(), "broker-2".into()],
        leader_changes: vec![(1.0, 0, 1), (50.0, 0, 2)],
        real: false,
        locks: Default::default(),
    }
}

#[test]
fn roles_are_the_spans_between_leading_and_its_end_a_crash_or_the_runs_end() {
    let p = [("topic", "t"), ("partition", "0"), ("term", "2")];
    let q = [("topic", "t"), ("partition", "1"), ("term", "3")];
    let lines = vec![
        line(1.0, "broker-1", "INFO", "leading", &p),
        line(2.0, "broker-2", "INFO", "leading", &q),
        line(5.0, "broker-1", "INFO", "no longer leading", &p),
        line(6.0, "broker-1", "INFO", "leading", &q[..2]),
        line(7.0, "broker-1", "INFO", "something else", &p),
    ];
    let faults = vec![FaultWindow {
        kind: "crash".into(),
        what: "crash broker-2".into(),
        from_s: 4,
        until_s: 9,
        node: Some("broker-2".into()),
    }];
    let roles = roles(&lines, &faults, 20.0);
    let spans: Vec<(&str, &str, f64, f64)> = roles
        .iter()
        .map(|r| (r.node.as_str(), r.partition.as_str(), r.from_s, r.until_s))
        .collect();
    assert_eq!(
        spans,
        [
            ("broker-1", "t/0", 1.0, 5.0),
            ("broker-2", "t/1", 2.0, 4.0),
            ("broker-1", "t/1", 6.0, 20.0)
        ]
    );
    assert_eq!(roles[2].term, "?");
}

#[test]
fn a_long_run_is_bounded_and_keeps_the_span_around_its_finding_whole() {
    // 30,000 sends over 120 s; the finding names one sent at 100 s.
    let history: Vec<Op> = (0..30_000)
        .map(|i| {
            send(
                i,
                i as f64 * 0.004,
                (i % 4) as i32,
                SendOutcome::Ok(i as i64),
            )
        })
        .collect();
    let finding = Finding::LostWrite {
        partition: 0,
        value: Bytes::from_static(b"v25000|...."),
        seen: "acknowledged at offset 25000".into(),
    };
    let r = run(history, vec![finding]);
    let lines: Vec<LogLine> = (0..100_000)
        .map(|i| line(i as f64 * 0.0012, "broker-1", "INFO", "appended", &[]))
        .collect();
    let report = crate::report::tests::report();
    let logged = Logged { lines, dropped: 7 };
    let mut logged = logged;
    logged.lines.extend((0..50_000).map(|i| {
        let mut l = line(
            i as f64 * 0.0024,
            "broker-1",
            "TRACE",
            "frame sent",
            &[("peer", "2"), ("messages", "3")],
        );
        l.target = crate::history::FRAMES_TARGET.into();
        l
    }));
    logged.lines.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let m = model(&report, &r, &logged);
    assert_eq!(m.messages.len(), MAX_MESSAGES);
    assert_eq!(
        (m.messages[0].to.as_str(), m.messages[0].messages),
        ("broker-2", 3)
    );
    assert_eq!(m.bounds.messages_total, 50_000);
    assert_eq!(m.bounds.logs_total, 100_000, "frames are not log lines");
    assert!(
        (MAX_OPS - 100..=MAX_OPS).contains(&m.ops.len()),
        "{}",
        m.ops.len()
    );
    assert!(m.logs.len() <= MAX_LOGS);
    assert_eq!(m.bounds.ops_total, 30_000);
    assert_eq!(m.bounds.logs_not_captured, 7);
    let f = m.finding.as_ref().expect("a finding");
    assert_eq!(f.ops, [25_000], "the finding's send is outlined");
    // Around the finding (100 s ± 20 s) every operation is kept; elsewhere a sample.
    let around = m
        .ops
        .iter()
        .filter(|o| o.t0 >= 81.0 && o.t0 <= 119.0)
        .count();
    assert_eq!(around, 9_501, "{around}");
    assert!(
        m.ops.iter().any(|o| o.t0 < 10.0),
        "the start is sampled, not dropped"
    );
    // However dense the span, the finding's own send is kept.
    let dense: Vec<Op> = (0..200_000)
        .map(|i| send(i, 90.0 + i as f64 * 0.0001, 0, SendOutcome::Ok(i as i64)))
        .collect();
    let mut r2 = run(dense, r.findings.clone());
    r2.findings = vec![Finding::LostWrite {
        partition: 0,
        value: Bytes::from_static(b"v123457|...."),
        seen: "acknowledged at offset 1".into(),
    }];
    let m2 = model(&report, &r2, &Logged::default());
    assert!(m2.ops.len() <= MAX_OPS);
    assert!(m2.ops.iter().any(|o| o.id == 123_457));
    let html = render(&m);
    assert!(html.len() < 12_000_000, "{} bytes", html.len());
}

#[test]
fn the_record_cannot_end_the_script_it_is_in() {
    let mut report = crate::report::tests::report();
    report.scenario = "a</script><script>alert(1)</script>".into();
    let r = run(Vec::new(), Vec::new());
    let html = render(&model(&report, &r, &Logged::default()));
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "only the page's own two"
    );
    assert!(html.contains("<title>a&lt;/script&gt;"));
    assert!(!html.contains("{{"), "every placeholder filled");
}
