//! Property tests (fuzzing on stable Rust): no input makes the cron parser
//! or the job decoder panic, and what they accept behaves.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use rcron_shared::{Job, Schedule};

/// Pieces cron fields are made of, valid and not.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        Just("?".to_string()),
        Just("L".to_string()),
        Just("5L".to_string()),
        Just("15W".to_string()),
        Just("1#2".to_string()),
        Just("MON-FRI".to_string()),
        Just("JAN,DEC".to_string()),
        (0u32..100).prop_map(|n| n.to_string()),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..70).prop_map(|n| format!("*/{n}")),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}/{b}")),
        (1990u32..2200).prop_map(|y| y.to_string()),
        "[0-9*/,#LW?-]{1,6}",
    ]
}

fn expression() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(field(), 1..9).prop_map(|f| f.join(" ")),
        Just("@daily".to_string()),
        "@[a-z]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn cron_parser_never_panics_on_any_text(expr in "\\PC{0,40}") {
        if let Ok(s) = Schedule::parse(&expr, Tz::UTC) {
            let _ = s.next_after(Utc::now());
        }
    }

    #[test]
    fn accepted_expressions_fire_strictly_later_in_order(expr in expression(), tz in prop_oneof![Just(Tz::UTC), Just(chrono_tz::Europe::Berlin), Just(chrono_tz::America::New_York)]) {
        if let Ok(s) = Schedule::parse(&expr, tz) {
            let from = Utc.with_ymd_and_hms(2024, 3, 30, 23, 59, 58).single().expect("valid time");
            let next = s.upcoming(from, 3);
            let mut prev = from;
            for t in next {
                prop_assert!(t > prev, "{expr}: {t} after {prev}");
                prev = t;
            }
        }
    }

    #[test]
    fn job_decoder_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Job::from_json(&bytes);
        let _ = Job::from_stored(&bytes);
    }

    #[test]
    fn job_decoder_never_panics_on_job_shaped_json(
        name in "\\PC{0,20}", command in "\\PC{0,20}", expr in expression(),
        timeout in any::<i64>(), tz in "[A-Za-z/_]{0,20}", retries in any::<i64>(),
    ) {
        let doc = serde_json::json!({"name": name, "command": command, "cronExpr": expr,
            "timeoutSecs": timeout, "timezone": tz, "retries": retries, "concurrency": "allow"});
        if let Ok(job) = Job::from_json(doc.to_string().as_bytes()) {
            // What is accepted round-trips through its stored form.
            prop_assert_eq!(Job::from_stored(job.to_json().as_bytes()).ok(), Some(job));
        }
    }
}

proptest! {
    // Fewer cases: each accepted expression's warnings look a year ahead.
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn refusals_name_the_field_and_warnings_never_panic(expr in expression(), from_days in 0i64..800) {
        let from = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("valid time")
            + chrono::TimeDelta::days(from_days);
        match Schedule::parse(&expr, chrono_tz::Europe::Berlin) {
            Ok(s) => {
                prop_assert!(s.warnings(from).len() <= 3, "{expr}: {:?}", s.warnings(from));
            }
            Err(e) => {
                let e = e.to_string();
                prop_assert!(
                    e.contains(" (second) ") || e.contains(" (minute) ") || e.contains(" (hour) ")
                        || e.contains(" (day-of-month) ") || e.contains(" (month) ")
                        || e.contains(" (weekday) ") || e.contains(" (year) ")
                        || e.contains("expected 5 fields") || e.contains("unknown macro"),
                    "{expr}: {e}"
                );
                prop_assert!(!e.contains("Component error"), "{expr}: {e}");
            }
        }
    }
}
