//! A tenant over its quota (`[workload.tenant]`): the admin sets a `producer_byte_rate` for the
//! client id [`CLIENT_ID`] once the workload topic exists; then one producer under that id
//! sends records of `value_bytes` to partition 0 at acks=all, one after another with no pause,
//! as fast as the brokers let it — held back only by the throttle. Its sends are recorded as
//! producer [`PRODUCER`]'s, so every check that nothing acknowledged is lost covers them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::client::routing::Conns;
use super::{admin_result, take_or_connect, value, wait_ready, World};

/// The tenant's client id.
pub const CLIENT_ID: &str = "tenant";
/// The tenant's producer number in the history (above any scenario's producers).
pub const PRODUCER: usize = 10_000;
/// The quota key it is held by.
const KEY: &str = "producer_byte_rate";

pub async fn run(world: Arc<World>) {
    let Some(tenant) = world.scenario.workload.tenant.clone() else {
        return;
    };
    if !wait_ready(&world).await {
        return;
    }
    // Its quota first, through any broker, until acknowledged.
    let mut conn = None;
    while Instant::now() < world.end {
        let Some(c) = take_or_connect(&world, &mut conn).await else {
            continue;
        };
        let invoked_s = world.now_s();
        let rate = tenant.quota_bytes_per_s as f64;
        let r = tokio::time::timeout(
            world.client_timeout(),
            c.set_client_quota(CLIENT_ID, KEY, rate),
        )
        .await;
        let what = format!("quota client-id={CLIENT_ID} {KEY}={rate}");
        if admin_result(&world, &mut conn, what, invoked_s, r) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let next = |n| (0, value(&format!("p{PRODUCER}-{n}"), tenant.value_bytes));
    let conns = Conns::for_client(CLIENT_ID);
    super::send_loop(
        &world,
        PRODUCER,
        &world.directory,
        conns,
        -1,
        Duration::ZERO,
        next,
    )
    .await;
}
