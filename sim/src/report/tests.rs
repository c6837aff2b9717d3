use super::*;

#[test]
fn ticks_are_round_and_cover_the_range() {
    assert_eq!(
        ticks(0.0, 240.0, 10),
        [0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0, 160.0, 180.0, 200.0, 220.0, 240.0]
    );
    assert_eq!(
        ticks(0.0, 14_100.0, 10),
        (0..=8).map(|i| i as f64 * 2000.0).collect::<Vec<_>>()
    );
    assert_eq!(ticks(0.0, 37.0, 4), [0.0, 10.0, 20.0, 30.0, 40.0]);
    assert_eq!(milliseconds(2500.0), "2.5 s");
    assert_eq!(milliseconds(0.1), "0.1 ms");
}

pub(crate) fn report() -> Report {
    let buckets = (0..120)
        .map(|i| Bucket {
            start_s: i as f64,
            acked_per_s: 80.0 + (i % 7) as f64,
            refused_per_s: if (30..40).contains(&i) { 20.0 } else { 0.0 },
            polled_per_s: 75.0,
            latency_ms_p50: Some(12.0),
            latency_ms_p99: Some(if (30..40).contains(&i) { 4000.0 } else { 30.0 }),
        })
        .collect();
    let window = |kind: &str, from_s, until_s| FaultWindow {
        kind: kind.into(),
        what: format!("{kind} <test>"),
        from_s,
        until_s,
        node: Some(BROKER_NODE.into()),
    };
    Report {
        scenario: "t".into(),
        description: String::new(),
        scenario_file: "t.toml".into(),
        seed: 3,
        outcome: "pass".into(),
        expected: "pass".into(),
        as_expected: true,
        findings: Vec::new(),
        finding_kinds: Vec::new(),
        configuration_drawn: Vec::new(),
        faults: vec![
            window("fsync-stall", 30, 40),
            window("partition", 31, 35),
            window("crash", 80, 82),
        ],
        acknowledged: 0,
        refused: 0,
        unknown: 0,
        retry_duplicates: 0,
        records_read_back: 0,
        records_polled: 0,
        simulated_s: 120.0,
        wall_s: 1.0,
        trace_hash: "0".into(),
        replay: String::new(),
        world: "simulation".into(),
        nodes: vec![NodeSeries {
            node: BROKER_NODE.into(),
            buckets,
            partitions_led: Vec::new(),
        }],
        figures: vec![
            FigureLine {
                name: "produce p50 ms".into(),
                value: 12.0,
                bound: 19.6,
                holds: true,
            },
            FigureLine {
                name: "produce p99 ms".into(),
                value: 30.0,
                bound: 33.6,
                holds: true,
            },
            FigureLine {
                name: "acknowledged per s".into(),
                value: 83.0,
                bound: 70.0,
                holds: true,
            },
        ],
        locks: Default::default(),
    }
}

#[test]
fn the_timeline_has_axes_labelled_faults_and_bound_lines() {
    let svg = report().svg();
    // Time ticks, rate and latency ticks.
    for label in [
        ">0 s<", ">60 s<", ">120 s<", ">100/s<", ">10 ms<", ">1 s<", ">10 s<",
    ] {
        assert!(svg.contains(label), "no tick {label}");
    }
    // Every fault window is labelled with its kind; overlapping ones on separate rows.
    for kind in ["fsync-stall", "partition", "crash"] {
        assert!(svg.contains(&format!(">{kind}</text>")), "no label {kind}");
    }
    let label_y = |kind: &str| {
        let at = svg.find(&format!(">{kind}</text>")).unwrap();
        let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
        tag.split("y=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(label_y("fsync-stall"), label_y("partition"));
    assert_eq!(label_y("fsync-stall"), label_y("crash"));
    // The three bounds, dashed.
    assert_eq!(svg.matches("class=\"bound\"").count(), 3);
    assert!(svg.contains("p99 ≤ 33.6 ms") && svg.contains("≥ 70/s"));
    // Escaped text, no NaN, one root element.
    assert!(svg.contains("fsync-stall &lt;test&gt;"));
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn a_cluster_has_a_lane_per_node_with_its_leaderships_and_its_faults_shaded_on_it() {
    let mut r = report();
    let lane = r.nodes[0].clone();
    r.nodes = ["broker-1", "broker-2", "broker-3"]
        .iter()
        .map(|n| NodeSeries {
            node: n.to_string(),
            ..lane.clone()
        })
        .collect();
    // broker-1 led both partitions, then broker-2 took them over at 31 s.
    let changes = [(1.0, 0, 1), (1.0, 1, 1), (31.0, 0, 2), (31.5, 1, 2)];
    for (i, n) in r.nodes.iter_mut().enumerate() {
        n.partitions_led = partitions_led(&changes, i as i32 + 1);
    }
    assert_eq!(
        r.nodes[0].partitions_led,
        [(0.0, 0), (1.0, 2), (31.0, 1), (31.5, 0)]
    );
    assert_eq!(r.nodes[1].partitions_led, [(0.0, 0), (31.0, 1), (31.5, 2)]);
    assert_eq!(r.nodes[2].partitions_led, [(0.0, 0)]);
    r.faults[1].node = None; // the network's: every lane
    let svg = r.svg();
    for n in ["broker-1", "broker-2", "broker-3"] {
        assert!(
            svg.contains(&format!("node {n} · partitions led")),
            "no lane {n}"
        );
    }
    assert_eq!(svg.matches("class=\"led\"").count(), 3);
    // Two faults of broker-1 on its lane, the network's on all three.
    assert_eq!(svg.matches("class=\"shade\"").count(), 2 + 3);
    assert!(svg.contains(">fsync-stall broker-1</text>"));
    let md = r.markdown("t-seed3");
    assert!(md.contains("| broker-2 |") && md.contains("One lane per broker"));
}

#[test]
fn a_long_run_is_ticked_in_hours() {
    let mut r = report();
    r.simulated_s = 14_100.0;
    let svg = r.svg();
    assert!(svg.contains(">0 h<") && svg.contains(">3 h<"), "hour ticks");
    assert!(!svg.contains(" min<") && !svg.contains(">2k s<"));
}

fn twins(sim: Report, real: Report) -> fidelity::Twins {
    fidelity::Twins {
        scenario: "t".into(),
        tolerance: 3.0,
        sim: vec![("sim/t-seed3.json".into(), sim)],
        real: vec![("real/t-real-seed3.json".into(), real)],
        skipped: None,
    }
}

#[test]
fn the_same_run_in_both_worlds_does_not_diverge() {
    let real = Report {
        world: "real".into(),
        ..report()
    };
    let t = twins(report(), real);
    assert_eq!(fidelity::divergences(&t), Vec::<String>::new());
    let table = fidelity::table(&[t]);
    assert!(
        table.contains("| t | 1/1 as expected (pass) | 1/1 as expected (pass) |"),
        "{table}"
    );
    assert!(table.contains("No divergence."), "{table}");
}

#[test]
fn a_finding_in_one_world_only_and_a_figure_past_the_tolerance_diverge() {
    let mut real = Report {
        world: "real".into(),
        finding_kinds: vec!["lost-write".into()],
        outcome: "failure".into(),
        as_expected: false,
        ..report()
    };
    real.acknowledged = report().acknowledged / 5;
    real.simulated_s = report().simulated_s;
    for b in &mut real.nodes[0].buckets {
        b.latency_ms_p99 = b.latency_ms_p99.map(|l| l * 10.0);
    }
    let d = fidelity::divergences(&twins(
        Report {
            acknowledged: 10_000,
            ..report()
        },
        Report {
            acknowledged: 2_000,
            ..real
        },
    ));
    let all = d.join("\n");
    assert!(
        all.contains("finding `lost-write` in real runs only: seed 3"),
        "{all}"
    );
    assert!(all.contains("real run of seed 3 not as expected"), "{all}");
    assert!(all.contains("throughput (acks/s): real"), "{all}");
    assert!(all.contains("produce p99 (ms): real"), "{all}");
}

#[test]
fn the_time_to_resume_is_counted_from_the_fault_to_half_the_rate_before_it() {
    let mut r = report();
    // Nothing acknowledged from 30 s (the first fault) until 37 s.
    for b in &mut r.nodes[0].buckets[30..37] {
        b.acked_per_s = 0.0;
    }
    r.faults.retain(|f| f.from_s == 30);
    let f = fidelity::figures(&r);
    assert_eq!(f.resume_s, Some(7.0));
}

#[test]
fn an_order_taken_or_a_try_failed_on_real_threads_only_is_a_divergence() {
    let order = |a: &str, b: &str| broker::sync::Order {
        first: a.into(),
        second: b.into(),
        first_at: "x.rs:1".into(),
        second_at: "x.rs:2".into(),
    };
    let mut sim = report();
    sim.locks.orders = vec![order("a", "b")];
    let mut real = Report {
        world: "real".into(),
        ..report()
    };
    real.locks.orders = vec![order("a", "b")];
    real.locks.contended.insert("a".into(), 40);
    assert_eq!(
        fidelity::divergences(&twins(sim.clone(), real.clone())),
        Vec::<String>::new(),
        "the same orders, and waits (which the model does not promise), do not diverge"
    );
    real.locks.orders.push(order("b", "c"));
    real.locks.try_failed.insert("c".into(), 2);
    let t = twins(sim, real);
    let all = fidelity::divergences(&t).join("\n");
    assert!(
        all.contains("lock order b → c taken on real threads (x.rs:1 then x.rs:2), never in simulation: seed 3"),
        "{all}"
    );
    assert!(
        all.contains("a try of lock c failed 2 time(s) on real threads, never in simulation"),
        "{all}"
    );
    let table = fidelity::table(&[t]);
    assert!(
        table.contains("orders of acquisition: 1 in simulation, 2 on real threads, 1 of them in both; waits on real threads: a 40"),
        "{table}"
    );
}
