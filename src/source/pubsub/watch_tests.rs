//! The outage state machine, look by look: one change per outage edge, counts carried to
//! the end of the outage, and refusals fatal only once they have lasted the grace.

use super::*;

const SUB: &str = "projects/p/subscriptions/orders_data-sub";

fn look(probe: Probe) -> Look {
    Look {
        probe,
        stream_failures: 0,
        stream_refusals: 0,
        last_stream_failure: None,
    }
}

fn unanswered() -> Look {
    look(Probe::Unanswered {
        subscription: SUB.into(),
        cause: "connection refused".into(),
    })
}

fn refused() -> Look {
    look(Probe::Refused {
        subscription: SUB.into(),
        cause: "NOT_FOUND: Subscription does not exist".into(),
    })
}

#[test]
fn an_outage_is_reported_once_when_it_begins_and_once_when_it_ends() {
    let t0 = Instant::now();
    let mut s = WatchState::default();
    assert_eq!(s.observe(t0, look(Probe::Answered)), Change::None);
    assert_eq!(
        s.observe(t0 + Duration::from_secs(2), unanswered()),
        Change::WentDown {
            subscription: SUB.into(),
            cause: "connection refused".into()
        }
    );
    for i in 2..10 {
        assert_eq!(
            s.observe(t0 + Duration::from_secs(2 * i), unanswered()),
            Change::None
        );
    }
    assert_eq!(
        s.observe(t0 + Duration::from_secs(22), look(Probe::Answered)),
        Change::CameBack {
            lasted: Duration::from_secs(20),
            failed_probes: 9,
            stream_failures: 0
        }
    );
    assert_eq!(
        s.observe(t0 + Duration::from_secs(24), look(Probe::Answered)),
        Change::None
    );
}

#[test]
fn a_stream_failure_is_an_outage_even_when_the_probe_answers() {
    let t0 = Instant::now();
    let mut s = WatchState::default();
    let failed = Look {
        stream_failures: 2,
        stream_refusals: 0,
        last_stream_failure: Some((SUB.into(), "Unknown: reset".into())),
        ..look(Probe::Answered)
    };
    assert_eq!(
        s.observe(t0, failed),
        Change::WentDown {
            subscription: SUB.into(),
            cause: "Unknown: reset".into()
        }
    );
    assert!(matches!(
        s.observe(t0 + Duration::from_secs(2), look(Probe::Answered)),
        Change::CameBack {
            stream_failures: 2,
            failed_probes: 0,
            ..
        }
    ));
}

#[test]
fn a_refusal_ends_the_run_only_once_it_has_lasted_the_grace() {
    let t0 = Instant::now();
    let mut s = WatchState::default();
    assert!(matches!(s.observe(t0, refused()), Change::WentDown { .. }));
    assert_eq!(
        s.observe(t0 + REFUSAL_GRACE - Duration::from_secs(1), refused()),
        Change::None
    );
    match s.observe(t0 + REFUSAL_GRACE, refused()) {
        Change::Fatal(f) => {
            assert_eq!(f.subscription, SUB);
            assert!(f.message.contains("NOT_FOUND"), "{f}");
        }
        other => panic!("expected the end of the run, got {other:?}"),
    }
}

#[test]
fn a_refusal_that_passes_is_forgotten_after_the_grace() {
    // An emulator restarted, then `setup` run again: "not found" for a few seconds.
    let t0 = Instant::now();
    let mut s = WatchState::default();
    assert!(matches!(s.observe(t0, refused()), Change::WentDown { .. }));
    let back = t0 + Duration::from_secs(4);
    assert!(matches!(
        s.observe(back, look(Probe::Answered)),
        Change::CameBack { .. }
    ));
    let later = back + REFUSAL_GRACE;
    assert_eq!(s.observe(later, look(Probe::Answered)), Change::None);
    // A new refusal starts a new grace: not fatal at once.
    assert!(matches!(
        s.observe(later + Duration::from_secs(2), refused()),
        Change::WentDown { .. }
    ));
}
