//! The lines gitlab-runner prints around artifact and cache work, worded exactly as it does, so
//! job logs (and what users search for) stay the same after switching runners.

use crate::message::Message;

pub fn uploading_artifacts() -> Message {
    Message::notice("Uploading artifacts...")
}

pub fn downloading_artifacts(job_name: &str, job_id: i64) -> Message {
    Message::notice(format!(
        "Downloading artifacts for {job_name} ({job_id})..."
    ))
}

/// The helper's line when a selection is empty; the upload is skipped.
pub fn no_files_to_upload() -> Message {
    Message::error("No files to upload")
}

pub fn creating_cache(key: &str) -> Message {
    Message::notice(format!("Creating cache {key}..."))
}

pub fn created_cache() -> Message {
    Message::notice("Created cache")
}

pub fn failed_to_create_cache() -> Message {
    Message::warning("Failed to create cache")
}

pub fn no_files_to_cache() -> Message {
    Message::warning("No files to cache.")
}

pub fn archive_up_to_date() -> Message {
    Message::info("Archive is up to date!")
}

pub fn checking_cache(key: &str, fallback: bool) -> Message {
    if fallback {
        Message::notice(format!("Checking cache for {key} (fallback)..."))
    } else {
        Message::notice(format!("Checking cache for {key}..."))
    }
}

pub fn successfully_extracted_cache() -> Message {
    Message::notice("Successfully extracted cache")
}

pub fn failed_to_extract_cache() -> Message {
    Message::warning("Failed to extract cache")
}

pub fn cache_file_missing() -> Message {
    Message::warning("Cache file does not exist")
}

/// `file_name` is the archive's base name, e.g. `cache.zip`.
pub fn cache_up_to_date(file_name: &str) -> Message {
    Message::info(format!("{file_name} is up to date"))
}

pub fn not_downloading_cache(key: &str) -> Message {
    Message::notice(format!("Not downloading cache {key} due to policy"))
}

pub fn not_uploading_cache(key: &str) -> Message {
    Message::notice(format!("Not uploading cache {key} due to policy"))
}

pub fn skipping_cache_extraction(reason: &str) -> Message {
    Message::notice(format!("Skipping cache extraction due to {reason}"))
}

pub fn skipping_cache_archiving(reason: &str) -> Message {
    Message::notice(format!("Skipping cache archiving due to {reason}"))
}

pub fn no_upload_url() -> Message {
    Message::info(
        "No URL provided, cache will not be uploaded to shared cache server. \
         Cache will be stored only locally.",
    )
}

pub fn no_download_url() -> Message {
    Message::info(
        "No URL provided, cache will not be downloaded from shared cache server. \
         Instead a local version of cache will be extracted.",
    )
}

pub fn cache_too_big(size: u64, limit: u64) -> Message {
    Message::info(format!(
        "Cache archive size ({size}) is too big (Limit is set to {limit}). \
         Cache will be stored only locally."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wording_matches_gitlab_runner() {
        assert_eq!(uploading_artifacts().to_string(), "Uploading artifacts...");
        assert_eq!(
            no_files_to_upload().to_string(),
            "ERROR: No files to upload"
        );
        assert_eq!(
            no_files_to_cache().to_string(),
            "WARNING: No files to cache."
        );
        assert_eq!(
            creating_cache("build/main").to_string(),
            "Creating cache build/main..."
        );
        assert_eq!(
            checking_cache("k", true).to_string(),
            "Checking cache for k (fallback)..."
        );
        assert_eq!(
            downloading_artifacts("build", 7).to_string(),
            "Downloading artifacts for build (7)..."
        );
        assert_eq!(
            cache_too_big(10, 5).to_string(),
            "Cache archive size (10) is too big (Limit is set to 5). Cache will be stored only locally."
        );
        assert_eq!(
            cache_up_to_date("cache.zip").to_string(),
            "cache.zip is up to date"
        );
    }
}
