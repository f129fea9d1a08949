//! The plots' font: DejaVu Sans, embedded in the binary (`trainer/assets/fonts/`, with its
//! licence), so that every machine draws the same plots and none depends on a system font.
//!
//! [`register`] hands it to plotters once per process as the family [`FAMILY`] (plotters
//! measures texts with it, and the SVG plots name the family); [`layout`] places a text's glyphs
//! the way the PNG plots draw them (see `report::glyphs`).

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::style::{FontStyle, register_font};

/// The embedded font file (DejaVu Sans, Bitstream Vera licence: `assets/fonts/DejaVuSans.LICENSE`).
pub(crate) const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name the plots use for every text.
pub const FAMILY: &str = "sans-serif";

/// The parsed embedded font.
pub(crate) fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        // The bytes are compiled in and checked by `embedded_font_parses_and_registers`.
        FontRef::try_from_slice(FONT_BYTES).expect("the embedded font is a valid TrueType file")
    })
}

/// Registers the embedded font with plotters as [`FAMILY`] (once per process).
pub(crate) fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_err() {
            // Only if the bytes were not a font, which the unit test rules out.
            tracing::error!("the embedded plot font could not be registered");
        }
    });
}

/// One glyph of a laid-out text: its pen position (pixels from the text's origin, before the
/// glyph's own bearing) and the glyph.
pub(crate) struct PlacedGlyph {
    /// Horizontal pen position, pixels.
    pub(crate) pen_x: f32,
    /// The glyph, scaled to the text's size.
    pub(crate) glyph: ab_glyph::Glyph,
}

/// The glyphs of `text` at `size` pixels with advance widths and kerning, and the text's
/// width; the layout box is `width × size / 1.24`, as plotters measures texts (so that anchors
/// and label areas agree with what is drawn).
pub(crate) fn layout(text: &str, size: f32) -> (Vec<PlacedGlyph>, f32) {
    let scaled = font().as_scaled(size);
    let mut pen = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push(PlacedGlyph {
            pen_x: pen,
            glyph: id.with_scale(size),
        });
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, pen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_parses_and_registers() {
        assert!(font().glyph_id('β').0 != 0, "β must have a glyph");
        assert!(font().glyph_id('Δ').0 != 0, "Δ must have a glyph");
        register();
        let style = plotters::style::IntoFont::into_font((FAMILY, 14.0));
        let (w, h) = style.box_size("ROC-AUC").expect("the family is registered");
        assert!(w > 40 && h > 5, "{w}×{h}");
    }

    #[test]
    fn layout_agrees_with_plotters_measure() {
        register();
        let (_, width) = layout("%ΔPerf (test ROC-AUC)", 14.0);
        let style = plotters::style::IntoFont::into_font((FAMILY, 14.0));
        let (w, _) = style.box_size("%ΔPerf (test ROC-AUC)").unwrap();
        assert!((width - w as f32).abs() <= 1.0, "{width} vs {w}");
    }
}
