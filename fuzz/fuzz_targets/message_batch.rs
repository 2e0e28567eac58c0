//! The ingest body parser (`domain::message::parse_batch`) on arbitrary bytes.
//!
//! Properties beyond "no panic":
//! - a refused body is refused as a whole, with a contract code;
//! - at most `MAX_BATCH_ITEMS` items, indexed 0, 1, 2… in order;
//! - an accepted message keeps a slice of the body (a non-array body is kept
//!   whole) and parses again to the same message;
//! - rewriting its `header.messageId` (what eSight receives) never fails,
//!   gives a message that validates, carries the new id and keeps every other
//!   field.
#![no_main]

use bytes::Bytes;
use energyload::domain::message::{
    MAX_BATCH_ITEMS, Message, delivery_message_id, parse_batch, rewrite_message_id,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let items = match parse_batch(body.clone()) {
        Ok(items) => items,
        Err(e) => {
            assert!(matches!(e.code(), "InvalidJson" | "BadRequest"));
            return;
        }
    };
    assert!(items.len() <= MAX_BATCH_ITEMS);
    let is_array = data.trim_ascii_start().first() == Some(&b'[');
    if !is_array {
        assert_eq!(items.len(), 1);
    }
    for (position, (index, outcome)) in items.iter().enumerate() {
        assert_eq!(*index, position);
        let Ok(message) = outcome else { continue };
        let raw = message.raw();
        if is_array {
            let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
            assert!(range.contains(&(raw.as_ptr() as usize)) || raw.is_empty());
        } else {
            assert_eq!(raw.as_ref(), data);
        }
        assert!(!message.message_id().trim().is_empty());
        assert!(message.datapoint_count() >= 1);
        assert_eq!(&Message::parse(raw).expect("an accepted message parses again"), message);

        let new_id = delivery_message_id(message.message_id(), "0190c1f5-0000-7000-8000-000000000000");
        let rewritten = rewrite_message_id(raw, &new_id).expect("accepted messages can be rewritten");
        let again = Message::parse(&rewritten).expect("a rewritten message still validates");
        assert_eq!(again.message_id(), new_id);
        assert_eq!(again.gateway_type_urn(), message.gateway_type_urn());
        assert_eq!(again.gateway_urn(), message.gateway_urn());
        assert_eq!(again.local_market(), message.local_market());
        assert_eq!(again.data_feed_type(), message.data_feed_type());
        assert_eq!(again.site_id(), message.site_id());
        assert_eq!(again.meter_id(), message.meter_id());
        assert_eq!(again.datapoint_count(), message.datapoint_count());
    }
});
