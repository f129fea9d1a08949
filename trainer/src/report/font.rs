//! The plots' font: a TTF found at run time (`$ANGES_PLOT_FONT`, then common system paths) and
//! registered once per process with plotters' `ab_glyph` renderer as `sans-serif`.
//!
//! Without a font the plots are still drawn, without any text, and a warning is logged once.

use std::path::PathBuf;
use std::sync::OnceLock;

use plotters::style::{FontStyle, register_font};

/// Environment variable naming the TTF/OTF file the plots use.
pub const FONT_ENV: &str = "ANGES_PLOT_FONT";

/// Font files tried, in order, after `$ANGES_PLOT_FONT`.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// The font registered for this process, if any.
static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Registers the plot font on first call; returns whether one is available (the plots then
/// carry their captions, axis labels and legends).
pub fn font_available() -> bool {
    FONT.get_or_init(register).is_some()
}

/// The font file registered for this process, if any (registers it on first call).
pub fn font_path() -> Option<PathBuf> {
    FONT.get_or_init(register).clone()
}

/// Tries `$ANGES_PLOT_FONT`, then [`FONT_PATHS`]; registers the first readable, valid font.
fn register() -> Option<PathBuf> {
    let from_env = std::env::var_os(FONT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let candidates = from_env
        .iter()
        .cloned()
        .chain(FONT_PATHS.iter().map(PathBuf::from));
    for path in candidates {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                if from_env.as_ref() == Some(&path) {
                    tracing::warn!("{FONT_ENV}={}: cannot read it ({e})", path.display());
                }
                continue;
            }
        };
        // plotters keeps a `'static` reference to the font: the bytes live for the process
        // (at most one leak per candidate, and registration happens once per process).
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            tracing::debug!("plot font: {}", path.display());
            return Some(path);
        }
        tracing::warn!("{}: not a usable font file", path.display());
    }
    tracing::warn!(
        "no font found for the study plots (set {FONT_ENV} to a .ttf file): \
         the plots are written without text"
    );
    None
}
