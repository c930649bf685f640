//! `kterm image build`: builds a sandbox image through the Docker API from a Dockerfile (by
//! default the recipe shipped in the binary), printing the build's output as it comes.

use std::io::Write;
use std::path::Path;

use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Error, Result};

/// The default sandbox image's recipe: bash, tmux, vim, less, curl, jq, git, python3, kubectl.
pub const SANDBOX_DOCKERFILE: &str = include_str!("sandbox.Dockerfile");

/// Builds `dockerfile` (with `context_dir`'s files, if given) as `tag`, writing progress to `out`.
pub async fn build(
    host: &str,
    tag: &str,
    dockerfile: &str,
    context_dir: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let docker = if host.is_empty() {
        Docker::connect_with_local_defaults()
    } else {
        Docker::connect_with_host(host)
    }
    .map_err(|e| Error::BackendUnavailable(format!("Docker client: {e}")))?
    .negotiate_version()
    .await
    .map_err(|e| Error::BackendUnavailable(format!("the Docker daemon does not answer: {e}")))?;
    let context = build_context(dockerfile, context_dir)?;
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = progress.next().await {
        let info = item.map_err(|e| Error::BackendUnavailable(format!("building {tag}: {e}")))?;
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            return Err(Error::BackendUnavailable(format!("building {tag}: {error}")));
        }
        if let Some(text) = info.stream.or(info.status) {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
    Ok(())
}

/// A tar archive with the Dockerfile and, recursively, the files of `dir`.
fn build_context(dockerfile: &str, dir: Option<&Path>) -> Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    if let Some(dir) = dir {
        archive
            .append_dir_all(".", dir)
            .map_err(|e| Error::io(format!("reading the build context {}", dir.display()), e))?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(|e| Error::io("writing the build context", e))?;
    archive.into_inner().map_err(|e| Error::io("writing the build context", e))
}
