//! Finding a dataset file: `--data-dir`, then `$ANGES_DATA_DIR`, then the user cache folder;
//! when none holds it, downloading it from the canonical MoleculeNet URL into the cache folder
//! (verified before it is kept), or failing with the folders searched and the reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::registry::DatasetSpec;
use super::{DataError, table};

/// Where data and caches live, and whether downloads are allowed.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// `--data-dir`: searched first.
    pub data_dir: Option<PathBuf>,
    /// Cache root: downloads go to `<cache>/moleculenet`, featurised datasets to
    /// `<cache>/features`. Default: `$ANGES_CACHE_DIR`, else the user cache folder + `anges`.
    pub cache_dir: PathBuf,
    /// Whether a missing MoleculeNet file may be downloaded.
    pub allow_download: bool,
    /// Replaces the base of the canonical URLs (a mirror); `None` = DeepChem's bucket.
    pub download_base: Option<String>,
    /// Whether featurised datasets are cached on disk.
    pub use_feature_cache: bool,
}

impl Default for DataOptions {
    fn default() -> Self {
        let cache_dir = std::env::var_os("ANGES_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("anges")))
            .unwrap_or_else(|| std::env::temp_dir().join("anges-cache"));
        Self {
            data_dir: None,
            cache_dir,
            allow_download: true,
            download_base: None,
            use_feature_cache: true,
        }
    }
}

impl DataOptions {
    /// The folders searched, in order: `--data-dir`, `$ANGES_DATA_DIR`, `<cache>/moleculenet`.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let env = std::env::var_os("ANGES_DATA_DIR").map(PathBuf::from);
        for d in [self.data_dir.clone(), env, Some(self.download_dir())]
            .into_iter()
            .flatten()
        {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }

    /// Where downloads are stored.
    pub fn download_dir(&self) -> PathBuf {
        self.cache_dir.join("moleculenet")
    }

    /// Where featurised datasets are cached.
    pub fn feature_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("features")
    }
}

/// The file of a registered dataset in `dir`, if there is one (`<stem>.csv[.gz]`, any case).
fn find_in(dir: &Path, spec: &DatasetSpec) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_ascii_lowercase)
                    .is_some_and(|n| {
                        spec.file_stems
                            .iter()
                            .any(|s| n == format!("{s}.csv") || n == format!("{s}.csv.gz"))
                    })
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Finds the file of a registered dataset, downloading it if allowed and needed.
pub fn locate(spec: &DatasetSpec, opts: &DataOptions) -> Result<PathBuf, DataError> {
    let searched = opts.search_dirs();
    if let Some(path) = searched.iter().find_map(|d| find_in(d, spec)) {
        return Ok(path);
    }
    let url = match &opts.download_base {
        Some(base) => format!(
            "{}/{}",
            base.trim_end_matches('/'),
            spec.download_file_name()
        ),
        None => spec.url.to_owned(),
    };
    let not_found = |message: String| DataError::NotFound {
        name: spec.name.to_owned(),
        searched: searched.clone(),
        url: url.clone(),
        message,
    };
    if !opts.allow_download {
        return Err(not_found("downloads are disabled".into()));
    }
    download(spec, &url, &opts.download_dir()).map_err(|e| match e {
        DownloadError::Fetch(message) => not_found(message),
        DownloadError::Data(e) => e,
    })
}

enum DownloadError {
    Fetch(String),
    Data(DataError),
}

/// Downloads `url` into `dir`, verifies it is a table with the registry's columns, keeps it.
fn download(spec: &DatasetSpec, url: &str, dir: &Path) -> Result<PathBuf, DownloadError> {
    tracing::info!(dataset = spec.name, url, "downloading");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| DownloadError::Fetch(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| DownloadError::Data(DataError::io(dir, e)))?;
    let dest = dir.join(spec.download_file_name());
    let part = dir.join(format!("{}.part", spec.download_file_name()));
    let io = |p: &Path, e| DownloadError::Data(DataError::io(p, e));
    let mut file = std::fs::File::create(&part).map_err(|e| io(&part, e))?;
    std::io::copy(&mut response.body_mut().as_reader(), &mut file)
        .map_err(|e| DownloadError::Fetch(e.to_string()))?;
    file.flush().map_err(|e| io(&part, e))?;
    drop(file);
    // Verify: a readable table (gzip intact when compressed) with the registry's columns.
    let bad = |message: String| {
        DownloadError::Data(DataError::BadDownload {
            name: spec.name.to_owned(),
            url: url.to_owned(),
            message,
        })
    };
    // Name the part file like the destination so the reader picks the right decompression.
    let check = dir.join(format!("verify-{}", spec.download_file_name()));
    std::fs::rename(&part, &check).map_err(|e| io(&check, e))?;
    let verified = table::read_header(&check).and_then(|header| {
        let (smiles, tasks) = spec
            .select_columns(&header)
            .ok_or_else(|| DataError::Layout {
                path: check.clone(),
                name: spec.name.to_owned(),
                header: header.clone(),
            })?;
        table::read_table(&check, &smiles, &tasks).map(|_| ())
    });
    if let Err(e) = verified {
        let _ = std::fs::remove_file(&check);
        return Err(bad(e.to_string()));
    }
    std::fs::rename(&check, &dest).map_err(|e| io(&dest, e))?;
    tracing::info!(dataset = spec.name, path = %dest.display(), "downloaded and verified");
    Ok(dest)
}
