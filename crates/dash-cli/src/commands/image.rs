//! `dash image`: import, pull, list, inspect, prune and remove images.

use std::path::PathBuf;

use clap::Subcommand;
use dash_core::api::{ImageInfo, PruneReport, PullEvent, PullRequest};

use crate::client::Client;
use crate::output::Table;
use crate::progress;
use crate::{encode, print_json};

/// What `dash image ls` prints; its help names them.
pub(crate) const LS_COLUMNS: [&str; 4] = ["REFERENCE", "ID", "SIZE", "LAYERS"];

/// `dash image …`.
#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Import an OCI image layout or `docker save` archive, or with --rootfs a root filesystem tarball.
    #[command(
        after_help = "Examples:\n  dash image import web.tar\n  dash image import --rootfs rootfs.tar bb:1"
    )]
    Import {
        /// The archive, or with --rootfs the root filesystem tarball.
        file: PathBuf,
        /// FILE is a root filesystem tarball: make it a one-layer image tagged REF (like
        /// `docker import`).
        #[arg(long)]
        rootfs: bool,
        /// With --rootfs: the reference to tag the image with, e.g. `bb:1`.
        #[arg(value_name = "REF")]
        reference: Option<String>,
    },
    /// Pull an image from its registry, with progress per layer.
    Pull {
        /// The image, by tag or `@sha256:` digest, e.g. `registry.example:5000/team/web:1.4`.
        reference: String,
    },
    /// List images: reference, id, size, layers.
    Ls,
    /// Show an image: config, layers, digests.
    Inspect {
        /// The image's reference, e.g. `bb:1`.
        reference: String,
    },
    /// Remove untagged images no replica uses, unreferenced blobs and unpacked layers.
    Prune,
    /// Remove an image (refused while a service uses it).
    Rm {
        /// The image's reference, e.g. `bb:1`.
        reference: String,
    },
}

/// Runs `dash image …`.
pub async fn run(client: &Client, json: bool, cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::Import {
            file,
            rootfs,
            reference,
        } => {
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", file.display()))?;
            let path = match (rootfs, reference) {
                (true, Some(r)) => format!("/v1/images/import?rootfs={}", encode(&r)),
                (true, None) => anyhow::bail!(
                    "--rootfs needs a reference: dash image import --rootfs rootfs.tar bb:1"
                ),
                (false, Some(r)) => anyhow::bail!(
                    "unexpected argument {r:?}; to tag a root filesystem tarball use --rootfs"
                ),
                (false, None) => "/v1/images/import".into(),
            };
            let images: Vec<ImageInfo> = client.upload(&path, f).await?;
            if json {
                print_json(&images);
            } else {
                for i in images {
                    println!("imported {} {}", i.tags.join(", "), short_id(&i.id));
                }
            }
        }
        ImageCmd::Pull { reference } => {
            let mut view = progress::PullView::new(json);
            let mut failed = None;
            client
                .stream_post(
                    "/v1/images/pull",
                    &PullRequest {
                        reference: reference.clone(),
                    },
                    |line| match serde_json::from_str::<PullEvent>(line) {
                        Ok(PullEvent::Error { message }) => failed = Some(message),
                        Ok(event) => view.show(&event, line),
                        Err(_) => {}
                    },
                )
                .await?;
            if let Some(message) = failed {
                anyhow::bail!("pulling {reference}: {message}");
            }
            if !view.done() {
                anyhow::bail!("pulling {reference}: the server ended the stream without a result");
            }
        }
        ImageCmd::Ls => {
            let images: Vec<ImageInfo> = client.get("/v1/images").await?;
            if json {
                print_json(&images);
            } else {
                let mut t = Table::new(LS_COLUMNS);
                for i in images {
                    let tags = if i.tags.is_empty() {
                        "<none>".into()
                    } else {
                        i.tags.join(",")
                    };
                    t.row([
                        tags,
                        short_id(&i.id),
                        dash_core::units::format_size(i.size_bytes),
                        i.layers.to_string(),
                    ]);
                }
                t.print();
            }
        }
        ImageCmd::Inspect { reference } => {
            let v: serde_json::Value = client
                .get(&format!("/v1/images/{}", encode(&reference)))
                .await?;
            print_json(&v);
        }
        ImageCmd::Prune => {
            let r: PruneReport = client
                .post("/v1/images/prune", &serde_json::json!({}))
                .await?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "removed {} images, {} blobs, {} layers; freed {}",
                    r.images_removed,
                    r.blobs_removed,
                    r.layers_removed,
                    dash_core::units::format_size(r.bytes_freed)
                );
            }
        }
        ImageCmd::Rm { reference } => {
            let removed: ImageInfo = client
                .delete(&format!("/v1/images/{}", encode(&reference)))
                .await?;
            if json {
                print_json(&removed)
            } else {
                println!("removed {reference} {}", short_id(&removed.id))
            }
        }
    }
    Ok(())
}

/// An image id as people read it: the first 12 hex digits, without `sha256:`.
fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}
