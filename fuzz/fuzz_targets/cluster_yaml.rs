//! `cluster.yaml`, the settings every later command reads back: any bytes are settings or
//! an error, never a panic, and settings saved and read again are the same settings.
#![no_main]

use kinit::cluster::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = Settings::parse(data) {
        let saved = serde_yaml::to_string(&settings).expect("settings serialize");
        let again = Settings::parse(saved.as_bytes())
            .unwrap_or_else(|e| panic!("saved settings do not read back: {e:#}\n{saved}"));
        assert_eq!(again, settings, "{saved}");
    }
});
