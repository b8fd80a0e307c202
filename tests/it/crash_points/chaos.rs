//! Every window on one pair of replicas (PostgreSQL, as in production), the dead replica
//! restarted aimed at the next window each time; the invariants are checked over the whole run.
//! `chaos` is the CI run (one kill per window); `figures` (ignored, run by hand:
//! `cargo test --all-features --test it crash_points::chaos::figures -- --ignored --nocapture`)
//! aims 20 kills at each window and prints p50/max from the kill to the end state.

use std::time::Duration;

use jit_broker::crash;

use super::*;

/// Per window, the kills that landed.
#[derive(Default)]
struct Figures {
    revoking: Vec<Kill>,
    before_add: Vec<Kill>,
    after_add: Vec<Kill>,
    departure: Vec<Kill>,
}

async fn run(rounds: usize) -> Figures {
    let mut p = Pair::start(Db::Postgres, crash::REVOKING_COMMITTED).await;
    let mut f = Figures::default();
    for round in 0..rounds {
        if round > 0 {
            p.rearm(crash::REVOKING_COMMITTED).await;
        }
        f.revoking
            .push(revoking_window(&mut p, BOB, "prod-db-admin", PROD_ADMINS).await);

        p.rearm(crash::BEFORE_OKTA_ADD).await;
        let (k, gid) = provisioning_window(
            &mut p,
            crash::BEFORE_OKTA_ADD,
            ALICE,
            "prod-db-admin",
            PROD_ADMINS,
        )
        .await;
        f.before_add.push(k);
        p.revoke_on_survivor(&gid).await;

        p.rearm(crash::AFTER_OKTA_ADD).await;
        let (k, gid) =
            provisioning_window(&mut p, crash::AFTER_OKTA_ADD, ALICE, "oncall", ON_CALL).await;
        f.after_add.push(k);
        p.revoke_on_survivor(&gid).await;

        p.rearm(crash::REVOKING_COMMITTED).await;
        f.departure.push(departure_window(&mut p, DAVE).await);
    }
    settled(&p).await;
    // Every grant the run made ended where it should: none left active but the survivor's
    // cleanup revokes, none provisioning or revoking (checked by `settled`).
    let grants = list_grants(&p.survivor.http, &p.survivor.base).await;
    assert!(
        grants.iter().all(|g| g["state"] == "revoked"),
        "every grant of the run ends revoked: {grants:?}"
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let f = run(1).await;
    assert!(
        f.departure.iter().all(|k| k.landed),
        "the departure's kill did not land"
    );
}

fn stats(name: &str, kills: &[Kill]) {
    let mut took: Vec<Duration> = kills.iter().filter(|k| k.landed).map(|k| k.took).collect();
    let mut cause: Vec<Duration> = kills
        .iter()
        .filter(|k| k.landed)
        .map(|k| k.from_cause)
        .collect();
    took.sort();
    cause.sort();
    if took.is_empty() {
        eprintln!("{name}: no kill landed");
        return;
    }
    let p50 = |v: &[Duration]| v[v.len() / 2];
    let max = |v: &[Duration]| v[v.len() - 1];
    eprintln!(
        "{name}: {} of {} kills landed; kill to end state p50 {:.2}s max {:.2}s; \
         cause to end state p50 {:.2}s max {:.2}s",
        took.len(),
        kills.len(),
        p50(&took).as_secs_f64(),
        max(&took).as_secs_f64(),
        p50(&cause).as_secs_f64(),
        max(&cause).as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures, run by hand: 20 aimed kills per window (several minutes)"]
async fn figures() {
    let f = run(20).await;
    stats("revoking commit → index update", &f.revoking);
    stats("grant row → Okta add", &f.before_add);
    stats("Okta add → activation", &f.after_add);
    stats("inside a departure", &f.departure);
}
