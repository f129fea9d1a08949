//! [`GlyphBackend`]: a plotters drawing backend that forwards everything to another one but
//! draws texts itself, from the embedded font's glyph outlines.
//!
//! plotters 0.3.7 rasterises each glyph of an `ab_glyph` font at its pen position without the
//! glyph's left bearing, so letters with different bearings drift apart ("R OC-AUC" in the PNG
//! plots). This backend places every glyph at pen position + bearing, with kerning, and keeps
//! plotters' text box (width: advances and kerning; height: size / 1.24) so that anchors and
//! rotations (the y-axis title) land where plotters expects. The SVG plots write `<text>`
//! elements and need no such fix.

use ab_glyph::Font;
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

use super::font::{font, layout};

/// Forwards drawing to `B`; draws texts with correctly placed glyphs (module doc).
pub(crate) struct GlyphBackend<B>(pub(crate) B);

impl<B: DrawingBackend> DrawingBackend for GlyphBackend<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size() as f32;
        let (glyphs, width) = layout(text, size);
        let (width, height) = (width as i32, (f64::from(size) / 1.24) as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        for placed in glyphs {
            let Some(outline) = font().outline_glyph(placed.glyph) else {
                continue; // a space
            };
            let bounds = outline.px_bounds();
            // Glyph pixels relative to the text's top-left corner: the pen position plus the
            // glyph's own offset, and plotters' baseline (size / 2 below the top).
            let left = (placed.pen_x + bounds.min.x).round() as i32;
            let top = (size / 2.0 + bounds.min.y).round() as i32;
            let mut pixels = Vec::new();
            outline.draw(|x, y, coverage| pixels.push((x as i32, y as i32, coverage)));
            for (x, y, coverage) in pixels {
                if coverage <= 0.0 {
                    continue;
                }
                let (x, y) = transform.transform(left + x + dx, top + y + dy);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                    let ink = BackendColor {
                        alpha: color.alpha * f64::from(coverage.min(1.0)),
                        rgb: color.rgb,
                    };
                    self.0.draw_pixel((x, y), ink)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::font::{FAMILY, register};
    use plotters::prelude::*;

    /// Draws `text` at `size` px on a white 300×60 RGB canvas, through `GlyphBackend` or plotters'
    /// own text drawing, and returns the widest run of blank columns between the first and the
    /// last inked column.
    fn widest_gap(text: &str, size: f64, fixed: bool) -> usize {
        register();
        let (w, h) = (300u32, 60u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let style = (FAMILY, size).into_font().color(&BLACK);
            let bitmap = BitMapBackend::with_buffer(&mut buf, (w, h));
            if fixed {
                let root = GlyphBackend(bitmap).into_drawing_area();
                root.draw(&Text::new(text.to_owned(), (10, 10), style))
                    .unwrap();
                root.present().unwrap();
            } else {
                let root = bitmap.into_drawing_area();
                root.draw(&Text::new(text.to_owned(), (10, 10), style))
                    .unwrap();
                root.present().unwrap();
            }
        }
        let inked: Vec<bool> = (0..w as usize)
            .map(|x| (0..h as usize).any(|y| buf[(y * w as usize + x) * 3] < 160))
            .collect();
        let first = inked.iter().position(|&i| i).expect("some ink");
        let last = inked.iter().rposition(|&i| i).expect("some ink");
        let mut widest = 0;
        let mut run = 0;
        for &i in &inked[first..=last] {
            run = if i { 0 } else { run + 1 };
            widest = widest.max(run);
        }
        widest
    }

    #[test]
    fn letters_keep_their_spacing() {
        // At the captions' size, the widest blank between two letters of "ROC-AUC" is the
        // font's own spacing (2 px), not a visible space.
        let fixed = widest_gap("ROC-AUC", 22.0, true);
        assert!(fixed <= 2, "gap of {fixed} px inside ROC-AUC");
    }

    #[test]
    fn plotters_own_drawing_spreads_letters() {
        // The defect this backend exists for; if plotters fixes it, this backend can go.
        let fixed = widest_gap("ROC-AUC", 22.0, true);
        let plain = widest_gap("ROC-AUC", 22.0, false);
        eprintln!("widest gap in ROC-AUC: plotters {plain} px, fixed {fixed} px");
        assert!(plain > fixed, "plotters {plain} px vs fixed {fixed} px");
    }
}
