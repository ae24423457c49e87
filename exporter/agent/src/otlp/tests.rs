//! Configuration checks and the handle's counting, without a collector (nothing is queued, or
//! the queue is never drained to the network within the test).

use std::time::UNIX_EPOCH;

use prometheus::Registry;
use sipsctp_correlate::Outcome;

use super::*;
use crate::otlp::span::tests::joined;

fn outcome(registry: &Registry, outcome: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "sipsctp_otlp_spans_total")
        .flat_map(|f| f.get_metric())
        .find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "outcome" && l.value() == outcome)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .unwrap_or(u64::MAX)
}

fn peers() -> Peers<'static> {
    Peers {
        inbound: "other",
        outbound: "carrier-a",
    }
}

#[test]
fn default_config_is_valid() {
    let c = OtlpConfig::default();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.endpoint, "http://127.0.0.1:4318");
    assert_eq!(c.sampling_ratio, 0.01);
    assert_eq!(c.max_spans_per_second, 200);
    assert_eq!(c.slow_threshold, Duration::from_secs(1));
    assert!(c.call_id);
    assert_eq!(
        c.traces_url().as_deref(),
        Ok("http://127.0.0.1:4318/v1/traces")
    );
    let c = OtlpConfig {
        endpoint: "http://collector:4318/otel/".into(),
        ..OtlpConfig::default()
    };
    assert_eq!(
        c.traces_url().as_deref(),
        Ok("http://collector:4318/otel/v1/traces")
    );
}

#[test]
fn validation_names_the_key() {
    let bad = [
        (
            OtlpConfig {
                sampling_ratio: 1.5,
                ..OtlpConfig::default()
            },
            "otlp.sampling_ratio: must be 0.0 ..= 1.0",
        ),
        (
            OtlpConfig {
                sampling_ratio: f64::NAN,
                ..OtlpConfig::default()
            },
            "otlp.sampling_ratio:",
        ),
        (
            OtlpConfig {
                sampling_ratio: -0.1,
                ..OtlpConfig::default()
            },
            "otlp.sampling_ratio:",
        ),
        (
            OtlpConfig {
                max_spans_per_second: 0,
                ..OtlpConfig::default()
            },
            "otlp.max_spans_per_second:",
        ),
        (
            OtlpConfig {
                slow_threshold: Duration::ZERO,
                ..OtlpConfig::default()
            },
            "otlp.slow_threshold_ms:",
        ),
        (
            OtlpConfig {
                endpoint: "127.0.0.1:4318".into(),
                ..OtlpConfig::default()
            },
            "otlp.endpoint: must start with http://",
        ),
        (
            OtlpConfig {
                endpoint: "https://collector:4318".into(),
                ..OtlpConfig::default()
            },
            "otlp.endpoint: https is not built in",
        ),
        (
            OtlpConfig {
                endpoint: "http://exa mple".into(),
                ..OtlpConfig::default()
            },
            "otlp.endpoint: not a URL",
        ),
        (
            OtlpConfig {
                endpoint: String::new(),
                ..OtlpConfig::default()
            },
            "otlp.endpoint:",
        ),
    ];
    for (c, want) in bad {
        let e = c.validate().expect_err(want).to_string();
        assert!(e.starts_with(want), "{e:?} should start with {want:?}");
    }
    for ratio in [0.0, 1.0] {
        let c = OtlpConfig {
            sampling_ratio: ratio,
            ..OtlpConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }
}

fn start(config: &OtlpConfig, registry: &Registry) -> OtlpExporter {
    let clock = Clock::new(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        Duration::ZERO,
    );
    OtlpExporter::start(config, clock, "sipsctpd-test", registry).expect("start")
}

#[tokio::test]
async fn outcomes_are_preset_to_zero_and_registered_once() {
    let registry = Registry::new();
    let e = start(&OtlpConfig::default(), &registry);
    for o in [
        "exported",
        "dropped_queue_full",
        "failed",
        "sampled_out",
        "rate_limited",
    ] {
        assert_eq!(outcome(&registry, o), 0, "{o}");
    }
    let again = OtlpExporter::start(
        &OtlpConfig::default(),
        Clock::new(UNIX_EPOCH, Duration::ZERO),
        "x",
        &registry,
    );
    assert!(matches!(again, Err(OtlpError::Metrics(_))));
    e.shutdown(Duration::from_millis(100)).await;
}

#[test]
fn start_needs_a_runtime() {
    let r = OtlpExporter::start(
        &OtlpConfig::default(),
        Clock::new(UNIX_EPOCH, Duration::ZERO),
        "x",
        &Registry::new(),
    );
    assert!(matches!(r, Err(OtlpError::NoRuntime)));
}

#[tokio::test]
async fn ratio_zero_samples_ordinary_transactions_out_per_span() {
    let registry = Registry::new();
    let config = OtlpConfig {
        sampling_ratio: 0.0,
        ..OtlpConfig::default()
    };
    let e = start(&config, &registry);
    e.offer(&joined(), peers());
    e.offer(&joined(), peers());
    assert_eq!(outcome(&registry, "sampled_out"), 4, "two pairs");
    e.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn the_token_bucket_counts_rate_limited_spans() {
    let registry = Registry::new();
    let config = OtlpConfig {
        sampling_ratio: 1.0,
        max_spans_per_second: 3,
        // a closed port: nothing will be exported, and nothing has to be
        endpoint: "http://127.0.0.1:9".into(),
        ..OtlpConfig::default()
    };
    let e = start(&config, &registry);
    e.offer(&joined(), peers()); // 2 tokens
    e.offer(&joined(), peers()); // needs 2, 1 left: rate limited (both spans)
    let mut one = joined();
    one.tx.outcome = Outcome::SendFailed; // a SERVER span only: 1 token
    e.offer(&one, peers());
    assert_eq!(outcome(&registry, "rate_limited"), 2);
    assert_eq!(outcome(&registry, "sampled_out"), 0);
    e.shutdown(Duration::ZERO).await;
    // Shutdown with no time left: the 3 queued spans are dropped, none exported.
    assert_eq!(outcome(&registry, "dropped_queue_full"), 3);
    assert_eq!(outcome(&registry, "exported"), 0);
}

#[tokio::test]
async fn a_full_queue_drops_whole_transactions_and_counts_them() {
    let registry = Registry::new();
    let config = OtlpConfig {
        sampling_ratio: 1.0,
        max_spans_per_second: u32::MAX,
        endpoint: "http://127.0.0.1:9".into(),
        ..OtlpConfig::default()
    };
    // A current-thread runtime: the export task cannot run while this test offers.
    let e = start(&config, &registry);
    let pairs = QUEUE_SPANS / 2 + 10;
    for _ in 0..pairs {
        e.offer(&joined(), peers());
    }
    assert_eq!(outcome(&registry, "dropped_queue_full"), 20);
    let after = e.clone();
    e.shutdown(Duration::ZERO).await;
    after.offer(&joined(), peers());
    assert_eq!(
        outcome(&registry, "dropped_queue_full"),
        20 + QUEUE_SPANS as u64 + 2,
        "queued at shutdown, then offered after it"
    );
}
