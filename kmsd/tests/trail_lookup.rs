//! LookupEvents over a real multi-segment trail: filters, time range, paging.

mod trail_support;

use std::collections::HashSet;

use kmsd::testing::trail::lookup::lookup_dir;
use kmsd::testing::trail::segment::read_all;
use kmsd::testing::trail::{Clock, LookupQuery};
use time::macros::datetime;
use trail_support::*;

fn all_pages(
    dir: &std::path::Path,
    base: LookupQuery,
    size: i64,
) -> Vec<kmsd::testing::trail::lookup::LookupEvent> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = lookup_dir(
            dir,
            &LookupQuery {
                max_results: Some(size),
                next_token: token.clone(),
                ..base.clone()
            },
        )
        .unwrap();
        assert!(page.events.len() <= size as usize);
        out.extend(page.events);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

#[test]
fn paging_across_segments_returns_every_event_once_newest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = write_events(&dir, 120, 8000, &clock);
    assert!(segments(&dir).len() > 5);
    for size in [50, 7, 1] {
        let events = all_pages(&dir, LookupQuery::default(), size);
        assert_eq!(events.len(), 120, "page size {size}");
        let ids: HashSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids.len(), 120);
        let times: Vec<_> = events.iter().map(|e| e.event_time.clone()).collect();
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, sorted, "newest first");
    }
    // The full record is the CloudTrailEvent string.
    let first = &all_pages(&dir, LookupQuery::default(), 1)[0];
    let rec: serde_json::Value = serde_json::from_str(&first.cloud_trail_event).unwrap();
    assert_eq!(rec["eventID"], first.event_id.as_str());
    assert_eq!(rec["eventTime"], "2026-01-01T00:01:59Z");
    assert_eq!(first.event_time, "2026-01-01T00:01:59+00:00");

    // A page token stays valid while new events arrive, and no event repeats.
    let p1 = lookup_dir(
        &dir,
        &LookupQuery {
            max_results: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    append(&w, record(120, clock.now())).unwrap();
    let p2 = lookup_dir(
        &dir,
        &LookupQuery {
            max_results: Some(10),
            next_token: p1.next_token.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let p1_ids: HashSet<_> = p1.events.iter().map(|e| &e.event_id).collect();
    assert!(p2.events.iter().all(|e| !p1_ids.contains(&e.event_id)));
    assert_eq!(p2.events[0].event_time, "2026-01-01T00:01:49+00:00");
}

#[test]
fn filters_and_time_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    drop(write_events(&dir, 60, 8000, &clock));
    let by = |k: &str, v: &str| {
        let q = LookupQuery::default()
            .with_attributes(&[(k.to_string(), v.to_string())])
            .unwrap();
        all_pages(&dir, q, 50)
    };
    let kms = by("EventSource", "kms.amazonaws.com");
    assert_eq!(kms.len(), 30);
    assert!(kms
        .iter()
        .all(|e| e.event_name == "Decrypt" && e.read_only == "true"));
    assert_eq!(by("EventName", "StartInstances").len(), 30);
    assert_eq!(by("ReadOnly", "false").len(), 30);
    assert_eq!(by("ResourceName", KEY_ARN).len(), 30);
    assert_eq!(by("ResourceType", "AWS::KMS::Key").len(), 30);
    assert_eq!(by("Username", "Alice").len(), 60);
    assert_eq!(by("Username", "Bob").len(), 0);
    let one = &read_all(&dir).unwrap()[17];
    let hit = by("EventId", &one.record.event_id);
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0].cloud_trail_event, one.raw);
    // Seconds 10..=19 inclusive.
    let q = LookupQuery {
        start_time: Some(datetime!(2026-01-01 00:00:10 UTC)),
        end_time: Some(datetime!(2026-01-01 00:00:19 UTC)),
        ..Default::default()
    };
    assert_eq!(all_pages(&dir, q, 3).len(), 10);
}
