//! Key files come from operators' disks and environment variables: no text they hold
//! may panic the parsers.

use proptest::prelude::*;
use switchboard_transport::curve::{parse_public_keys, KeyPair};

proptest! {
    #[test]
    fn key_file_parsers_never_panic(text in "\\PC{0,200}") {
        let _ = parse_public_keys(&text, "prop");
        let _ = KeyPair::from_file_text(&text, "prop");
    }

    #[test]
    fn a_generated_pair_reads_back_from_its_own_file_text(_seed in 0u8..4) {
        let pair = KeyPair::generate().expect("this libzmq has CURVE");
        let text = pair.to_file_text();
        let read = KeyPair::from_file_text(&text, "generated").expect("reads back");
        prop_assert_eq!(read.public, pair.public);
        prop_assert_eq!(read.secret, pair.secret);
    }
}
