//! The REST record parser, JSON body → record: `api::records::record_from_json`, the function
//! behind `POST /api/v1/records` and `PUT /api/v1/records/{id}`.
//!
//! Asserts: no panic; a body accepted as a new record is accepted as a replacement too, as
//! the same record; an accepted record, shown as the API shows it (name, type, ttl and data
//! in normal form) and sent back, parses to the same record, as does its stored form through
//! `Draft::parse` (what a restart reads).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rind_server::api::records::{record_from_json, IdRule};
use rind_server::records::Draft;

const ID: &str = "01hzy8k5d1v7r3c2x9m4n6q8tb";

fuzz_target!(|data: &[u8]| {
    let new = record_from_json(data, IdRule::New);
    let replacing = record_from_json(data, IdRule::Replaces(ID));
    if let Ok(draft) = &new {
        assert_eq!(
            replacing.as_ref().ok(),
            Some(draft),
            "new but not replacing"
        );
    }
    for draft in [new, replacing].into_iter().flatten() {
        let shown = serde_json::json!({
            "name": draft.name().to_ascii(),
            "type": draft.rtype().to_string(),
            "ttl": draft.ttl(),
            "data": draft.text(),
        });
        let again = record_from_json(shown.to_string().as_bytes(), IdRule::New)
            .unwrap_or_else(|e| panic!("{shown} as shown is refused: {e}"));
        assert_eq!(again, draft, "{shown} parses to another record");
        assert_eq!(again.text(), draft.text());
        let stored = Draft::parse(
            &draft.name().to_ascii(),
            &draft.rtype().to_string(),
            draft.ttl().into(),
            &draft.text(),
        )
        .unwrap_or_else(|e| panic!("{shown} from the store is refused: {e}"));
        assert_eq!(stored, draft, "{shown} from the store is another record");
    }
});
