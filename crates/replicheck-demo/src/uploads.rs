//! The demo's uploads (`--uploads DIR`): `POST /uploads` takes a multipart form's `file`
//! and keeps it in DIR under its own name; `GET /uploads/NAME` serves it. DIR on each
//! replica's own disk is the misconfiguration; a directory every replica shares is correct.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::app::App;

/// The largest upload kept.
pub const MAX_UPLOAD: usize = 1024 * 1024;

/// A file name kept as it is, or none: letters, digits, dots, dashes and underscores only,
/// so that no name leaves the directory.
fn safe(name: &str) -> Option<&str> {
    let fine = !name.is_empty() && name.len() <= 100 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    fine.then_some(name)
}

fn dir(app: &App) -> Option<&PathBuf> {
    app.uploads.as_ref()
}

pub async fn upload(State(app): State<Arc<App>>, mut form: Multipart) -> Response {
    let Some(dir) = dir(&app) else { return StatusCode::NOT_FOUND.into_response() };
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return (StatusCode::BAD_REQUEST, "no `file` in the form").into_response(),
            Err(err) => return (StatusCode::BAD_REQUEST, format!("not a multipart form: {err}")).into_response(),
        };
        if field.name() != Some("file") {
            continue;
        }
        let Some(name) = field.file_name().and_then(safe).map(str::to_owned) else {
            return (StatusCode::BAD_REQUEST, "the file needs a plain name").into_response();
        };
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return (StatusCode::BAD_REQUEST, format!("the file did not arrive: {err}")).into_response(),
        };
        let written = async {
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::write(dir.join(&name), &bytes).await
        };
        let written = written.await;
        return match written {
            Ok(()) => (StatusCode::CREATED, [(header::LOCATION, format!("/uploads/{name}"))], format!("uploaded {name} to {}", app.replica)).into_response(),
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot keep {name}: {err}")).into_response(),
        };
    }
}

pub async fn download(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let Some(dir) = dir(&app) else { return StatusCode::NOT_FOUND.into_response() };
    let Some(name) = safe(&name) else { return StatusCode::NOT_FOUND.into_response() };
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => (StatusCode::NOT_FOUND, format!("{name} is not here ({})", app.replica)).into_response(),
    }
}
