//! The config file (/etc/kinit/config.yaml): any bytes are a config or an error, never a
//! panic, and every value a config holds passed its own check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = kinit::config::Config::parse(data) {
        if let Some(mirror) = &config.mirror {
            assert_eq!(kinit::config::parse_mirror(mirror).as_ref(), Ok(mirror));
        }
        if let Some(repository) = &config.image_repository {
            assert_eq!(
                kinit::config::parse_image_repository(repository).as_ref(),
                Ok(repository)
            );
        }
    }
});
