//! Many AiApps under random faults: throttling, lost answers, 5xx after create, a
//! listing lag. Whatever happens, each AiApp ends with exactly one app. `make test` runs
//! a small version; `make chaos` a large one (`CHAOS_AIAPPS`, default 20 here).

use anyhow::Result;
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::crd::{AiApp, Phase};
use dataforest_operator::dataforest::Operation;
use libtest_mimic::Failed;

use crate::fixture;
use crate::world::{World, spec, with_world};

fn aiapp_count() -> usize {
    std::env::var("CHAOS_AIAPPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

pub fn every_aiapp_gets_exactly_one_app_under_random_faults() -> Result<(), Failed> {
    fixture::run("chaos", |ctx| async move {
        let faults = Faults {
            throttle: Fault::probability(0.1),
            lost_response: Fault::probability(0.1).on(&[Operation::Submit]),
            error_after: Fault::probability(0.05).on(&[Operation::Submit]),
            error_before: Fault::probability(0.05).on(&[Operation::Submit, Operation::GetDetail]),
            listing_lag_ms: 500,
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let count = aiapp_count();
                for n in 0..count {
                    world
                        .create(&format!("chaos-{n:03}"), spec(100, 200, "SUCCEEDED"))
                        .await?;
                }
                let done =
                    |a: &AiApp| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded);
                let aiapps = world.wait_for_count(count, "Succeeded", done).await?;
                crate::controller::assert_one_app_each(world, &aiapps, count)
            })
        })
        .await
    })
}
