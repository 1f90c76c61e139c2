//! Makes every image kinit runs available, the enabled addons' included: loaded from the
//! offline bundle when one is given and Docker lacks them, otherwise used as present or
//! pulled. A pulled image is recorded, so `kinit down --purge` removes it again; one that
//! was there before is another tool's or the user's, and stays.

use anyhow::Result;

use super::Context;
use crate::bundle;
use crate::docker::{ImageSource, record_image_id};
use crate::progress::Outcome;

/// The images this host runs: the control plane's or a node's, and the enabled addons'.
pub fn wanted(ctx: &Context) -> Vec<String> {
    let mut images = match ctx.settings.is_control_plane() {
        true => ctx.images.all(),
        false => ctx.images.node(),
    };
    for addon in &ctx.settings.addons {
        images.extend(addon.images(&ctx.images));
    }
    images
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let images = wanted(ctx);
    let mut loaded = 0;
    if let Some(dir) = &ctx.sources.bundle {
        loaded = bundle::load_wanted(&ctx.docker, dir, &images)
            .await?
            .loaded
            .len();
    }
    // An image pulled under a new name may be one the engine had under another: that one
    // is not kinit's to remove.
    let present = ctx.docker.image_ids().await?;
    let mut pulled = 0;
    for image in &images {
        if ctx.docker.ensure_image(image).await? == ImageSource::Pulled {
            pulled += 1;
            if let Some(id) = ctx.docker.image_id(image).await?
                && !present.contains(&id)
            {
                record_image_id(&ctx.layout.kinit_pulled_images(), &id)?;
            }
        }
    }
    Ok(match (loaded, pulled) {
        (0, 0) => Outcome::AlreadyDone(format!("all {} present", images.len())),
        _ => Outcome::Done(format!("{loaded} loaded from the bundle, {pulled} pulled")),
    })
}
