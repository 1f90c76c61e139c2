//! The container-create body the runtime proxy rewrites on cri-dockerd's way to Docker:
//! any body is forwarded as it came or rewritten to JSON that needs no second rewrite,
//! with no negative OOM score left where the host refuses one.
#![no_main]

use kinit::runtime_proxy::{Rewrites, rewrite_create_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rewrites = [
        Rewrites {
            clamp_oom_score_adj: false,
            privileged_without: None,
        },
        Rewrites {
            clamp_oom_score_adj: true,
            privileged_without: Some(vec!["CAP_SYS_RESOURCE".to_string()]),
        },
    ];
    for rewrites in &rewrites {
        let Some((body, changes)) = rewrite_create_body(data, rewrites) else {
            continue;
        };
        assert!(!changes.is_empty());
        let create: serde_json::Value = serde_json::from_slice(&body).expect("JSON out");
        assert!(
            rewrite_create_body(&body, rewrites).is_none(),
            "a rewritten body was rewritten again: {create}"
        );
        if rewrites.clamp_oom_score_adj {
            let adj = create["HostConfig"]["OomScoreAdj"].as_i64();
            assert!(adj.is_none_or(|a| a >= 0), "{create}");
        }
    }
});
