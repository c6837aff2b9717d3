//! `cargo xtask bench topics`: how long creating a topic takes — until CreateTopics answers, and
//! until every one of its partitions has taken an acks=all write through its leader (the topic
//! is usable, not only accepted).

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use kafka_protocol::messages::ApiKey;
use tokio::time::Instant;

use super::kafka::{self, ApiVersions, Connection};
use super::{BrokerArgs, Target};

#[derive(Args, Clone, Debug)]
pub struct TopicsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Topics to create, one after another.
    #[arg(long, default_value_t = 20)]
    topics: usize,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Replication factor [default: the broker's default].
    #[arg(long)]
    replication_factor: Option<i16>,
    /// Keep the topics (they are deleted after the run otherwise).
    #[arg(long)]
    keep: bool,
}

pub async fn topics_bench(args: TopicsArgs) -> Result<()> {
    if args.topics == 0 || args.partitions <= 0 {
        bail!("--topics and --partitions must be at least 1");
    }
    let target = Target::new(&args.broker, args.broker.only_security()?).await?;
    let result = against(&args, &target).await;
    let stopped = target.stop().await;
    result?;
    stopped
}

/// Until CreateTopics answered, and until every partition took a write.
struct Timing {
    answered: Duration,
    producible: Duration,
}

async fn against(args: &TopicsArgs, target: &Target) -> Result<()> {
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&target.addr, timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    let create_version = versions.pick(ApiKey::CreateTopics, 4, kafka::CREATE_TOPICS_VERSIONS.1)?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut timings = Vec::with_capacity(args.topics);
    let mut names = Vec::with_capacity(args.topics);
    for i in 0..args.topics {
        let name = format!("bench-topic-{run}-{i}");
        let started = Instant::now();
        let rf = args.replication_factor.unwrap_or(-1);
        kafka::create_topic(
            &mut admin,
            create_version,
            &name,
            args.partitions,
            rf,
            30_000,
        )
        .await?;
        let answered = started.elapsed();
        names.push(name.clone());
        writable(&target.addr, &versions, &name, args.partitions, timeout).await?;
        timings.push(Timing {
            answered,
            producible: started.elapsed(),
        });
    }
    if !args.keep {
        if let Err(e) = kafka::delete_topics(&mut admin, &versions, &names).await {
            println!("xtask: could not delete the benchmark's topics: {e:#}");
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let summary = |pick: fn(&Timing) -> Duration| {
        let mut v: Vec<f64> = timings.iter().map(|t| ms(pick(t))).collect();
        v.sort_by(f64::total_cmp);
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms, min {:.1} ms",
            p(0.5),
            p(0.9),
            v[v.len() - 1],
            v[0]
        )
    };
    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "{} topics of {} partitions, replication factor {}, created one after another; \
             each then written (one record, acks=all) on every partition through its leader",
            args.topics,
            args.partitions,
            args.replication_factor
                .map_or("the broker's default".to_string(), |r| r.to_string())
        ),
    );
    table.row("CreateTopics answered", summary(|t| t.answered));
    table.row("every partition written", summary(|t| t.producible));
    table.row(
        "each (answered / written, ms)",
        timings
            .iter()
            .map(|t| format!("{:.0}/{:.0}", ms(t.answered), ms(t.producible)))
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!("Stillwater topic-creation benchmark");
    table.print();
    Ok(())
}

/// Write one record with acks=all to every partition of `topic` through its leader, asking
/// Metadata again after an error, until all took one (30 s at most).
pub async fn writable(
    bootstrap: &str,
    versions: &ApiVersions,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<()> {
    super::partitions::write_everywhere(
        bootstrap,
        versions,
        topic,
        partitions,
        timeout,
        Duration::from_secs(30),
    )
    .await
}
