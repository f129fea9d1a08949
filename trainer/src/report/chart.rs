//! A backend-independent description of a 2-D chart ([`Chart`]: lines, marker series, texts)
//! and the single drawing function that renders it with plotters on any backend, so that the
//! PNG and the SVG of a plot come from the same code. Also the axis ranges (finite values only,
//! with a margin so that an empty, single-point or constant series never gives an empty range).

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::glyphs::GlyphBackend;

/// Width of every plot, pixels.
pub const PLOT_WIDTH: u32 = 960;
/// Height of every plot, pixels.
pub const PLOT_HEIGHT: u32 = 600;

/// Marker shapes of the point series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Filled circle.
    Circle,
    /// Filled triangle.
    Triangle,
    /// Filled square.
    Square,
    /// Diagonal cross.
    Cross,
    /// Filled circle with a black outline (the stop points of the curves).
    Ring,
}

impl Shape {
    /// The shapes given to successive series.
    pub(crate) const CYCLE: [Shape; 4] =
        [Shape::Triangle, Shape::Square, Shape::Cross, Shape::Circle];
}

/// A polyline (joined in the given order), with a dot and an optional text at each point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    /// Legend entry (none when empty).
    pub(crate) name: String,
    /// Colour of the line and its dots.
    pub(crate) color: RGBColor,
    /// The points, in drawing order (finite coordinates only).
    pub(crate) points: Vec<(f64, f64)>,
    /// A text next to each point (empty: none).
    pub(crate) texts: Vec<String>,
}

/// A series of markers, each with its own colour.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Markers {
    /// Legend entry (none when empty).
    pub(crate) name: String,
    /// Marker shape.
    pub(crate) shape: Shape,
    /// Colour of the legend sample.
    pub(crate) legend_color: RGBColor,
    /// The points (finite coordinates only) and their colours.
    pub(crate) points: Vec<((f64, f64), RGBColor)>,
}

/// Everything one plot shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    /// Title above the plot.
    pub(crate) caption: String,
    /// Description of the x axis.
    pub(crate) x_desc: String,
    /// Description of the y axis.
    pub(crate) y_desc: String,
    /// Lines, drawn first.
    pub(crate) lines: Vec<Line>,
    /// Marker series, drawn over the lines.
    pub(crate) markers: Vec<Markers>,
    /// Whether the x range includes 0 (and, with `zero_lines`, the line x = 0 is drawn).
    pub(crate) x_zero: bool,
    /// Whether the y range includes 0 (and, with `zero_lines`, the line y = 0 is drawn).
    pub(crate) y_zero: bool,
    /// Whether to draw the reference lines x = 0 and y = 0.
    pub(crate) zero_lines: bool,
}

impl Chart {
    /// Every point of the chart.
    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let lines = self.lines.iter().flat_map(|l| l.points.iter().copied());
        let markers = self
            .markers
            .iter()
            .flat_map(|m| m.points.iter().map(|(p, _)| *p));
        lines.chain(markers)
    }

    /// The number of legend entries: the named series that have points.
    fn legend_entries(&self) -> usize {
        let lines = self
            .lines
            .iter()
            .filter(|l| !l.name.is_empty() && !l.points.is_empty());
        let markers = self
            .markers
            .iter()
            .filter(|m| !m.name.is_empty() && !m.points.is_empty());
        lines.count() + markers.count()
    }

    /// The x and y ranges: every finite point, 0 where asked, plus a margin.
    pub(crate) fn ranges(&self) -> (Range<f64>, Range<f64>) {
        let x = padded_range(self.points().map(|p| p.0), self.x_zero);
        let y = padded_range(self.points().map(|p| p.1), self.y_zero);
        (x, y)
    }
}

/// A non-empty range covering the finite `values` (and 0 with `include_zero`), with a 5 %
/// margin; `0..1` without any finite value; a margin around a single value.
pub(crate) fn padded_range(values: impl Iterator<Item = f64>, include_zero: bool) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if include_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    let magnitude = lo.abs().max(hi.abs());
    let span = hi - lo;
    let pad = if span > magnitude * 1e-9 {
        span * 0.05
    } else if magnitude > 0.0 {
        magnitude * 0.05
    } else {
        1.0
    };
    (lo - pad)..(hi + pad)
}

/// Narrowest and widest legend panel right of the plot, pixels (names longer than the widest
/// panel allows are shortened with an ellipsis).
const LEGEND_WIDTH: std::ops::RangeInclusive<i32> = 120..=300;
/// Size of the legend's and the point texts' font, pixels.
const SMALL_TEXT: f64 = 14.0;
/// Size of the point texts' font, pixels.
const POINT_TEXT: f64 = 13.0;
/// Height of one legend entry, pixels.
const LEGEND_ROW: i32 = 22;
/// Half-size of the markers, pixels.
const MARKER: i32 = 5;

/// A rectangle in canvas pixels: `(left, top)` to `(right, bottom)`, exclusive of the far edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    /// Left edge.
    pub(crate) left: i32,
    /// Top edge.
    pub(crate) top: i32,
    /// Right edge (exclusive).
    pub(crate) right: i32,
    /// Bottom edge (exclusive).
    pub(crate) bottom: i32,
}

impl Rect {
    /// The `width × height` rectangle with its top-left corner at `(left, top)`.
    pub(crate) fn at(left: i32, top: i32, width: i32, height: i32) -> Self {
        Rect {
            left,
            top,
            right: left + width,
            bottom: top + height,
        }
    }

    /// Whether the two rectangles share any pixel.
    pub(crate) fn intersects(&self, other: &Rect) -> bool {
        self.left < other.right
            && other.left < self.right
            && self.top < other.bottom
            && other.top < self.bottom
    }

    /// Whether `self` lies entirely inside `outer`.
    pub(crate) fn inside(&self, outer: &Rect) -> bool {
        self.left >= outer.left
            && self.right <= outer.right
            && self.top >= outer.top
            && self.bottom <= outer.bottom
    }
}

/// Where [`draw_chart`] put the texts it placed itself, for the checks that they neither overlap
/// nor leave the canvas.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ChartLayout {
    /// The whole canvas.
    pub(crate) canvas: Option<Rect>,
    /// The legend's frame.
    pub(crate) legend: Option<Rect>,
    /// The point texts drawn, with their boxes.
    pub(crate) labels: Vec<(String, Rect)>,
    /// Point texts left out because no free place was found near their point.
    pub(crate) hidden: usize,
}

/// Texts of points less than this many pixels apart are merged into one.
const MERGE_DISTANCE: i32 = 4;

/// Merges texts like `β=0.1`, `β=0.2` into `β=0.1, 0.2` (the common `name=` prefix once); many
/// values become `β=0.1 … 0.7 (7 values)`.
pub(crate) fn merge_texts(texts: &[&str]) -> String {
    let prefix = |t: &str| t.find('=').map(|i| t[..=i].to_owned());
    let shared = prefix(texts[0]).filter(|p| texts.iter().all(|t| t.starts_with(p.as_str())));
    let (head, mut values): (String, Vec<&str>) = match &shared {
        Some(p) => (p.clone(), texts.iter().map(|t| &t[p.len()..]).collect()),
        None => (String::new(), texts.to_vec()),
    };
    // Numbers in increasing order, so that a range reads from its smallest to its largest.
    if values.iter().all(|v| v.parse::<f64>().is_ok()) {
        values.sort_by(|a, b| {
            let (a, b) = (a.parse::<f64>(), b.parse::<f64>());
            a.unwrap_or(f64::NAN).total_cmp(&b.unwrap_or(f64::NAN))
        });
    }
    if values.len() > 3 {
        format!(
            "{head}{} … {} ({} values)",
            values[0],
            values[values.len() - 1],
            values.len()
        )
    } else {
        format!("{head}{}", values.join(", "))
    }
}

/// Places label boxes of `sizes` next to their `anchors` so that no two overlap, none covers an
/// `obstacle` (the markers) and all stay inside `bounds`: for each label in turn, the first free
/// spot among eight positions around its anchor, tried at three growing distances. A label with
/// no free spot is `None` (left out).
pub(crate) fn place_labels(
    anchors: &[(i32, i32)],
    sizes: &[(i32, i32)],
    obstacles: &[Rect],
    bounds: &Rect,
) -> Vec<Option<Rect>> {
    let mut placed: Vec<Rect> = Vec::new();
    anchors
        .iter()
        .zip(sizes)
        .map(|(&(x, y), &(w, h))| {
            let spot = [7, 16, 28].iter().find_map(|&gap| {
                let candidates = [
                    (x + gap, y - h / 2),
                    (x + gap, y - h - gap / 2),
                    (x + gap, y + gap / 2),
                    (x - gap - w, y - h / 2),
                    (x - w / 2, y - gap - h),
                    (x - w / 2, y + gap),
                    (x - gap - w, y - h - gap / 2),
                    (x - gap - w, y + gap / 2),
                ];
                candidates.into_iter().find_map(|(left, top)| {
                    let r = Rect::at(left, top, w, h);
                    let free = r.inside(bounds)
                        && !placed.iter().any(|p| p.intersects(&r))
                        && !obstacles.iter().any(|o| o.intersects(&r));
                    free.then_some(r)
                })
            });
            if let Some(r) = spot {
                placed.push(r);
            }
            spot
        })
        .collect()
}

/// `text` shortened with an ellipsis to at most `max_width` pixels at `size`.
fn fit_text(text: &str, size: f64, max_width: i32) -> String {
    let width = |t: &str| super::font::layout(t, size as f32).1.ceil() as i32;
    if width(text) <= max_width {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len())
        .rev()
        .map(|n| format!("{}…", chars[..n].iter().collect::<String>()))
        .find(|t| width(t) <= max_width)
        .unwrap_or_else(|| "…".to_owned())
}

/// The pixel size of `text` as plotters lays it out at `size` (width; height `size / 1.24`).
fn text_size(text: &str, size: f64) -> (i32, i32) {
    let width = super::font::layout(text, size as f32).1.ceil() as i32;
    (width, (size / 1.24).ceil() as i32)
}

/// Draws `chart` on `root`: the caption across the top, the plot, and the legend in a panel on
/// its right (so that it never hides a point), sized to its names and inside the canvas; the
/// point texts are merged where points coincide and placed where they overlap nothing (see
/// [`place_labels`]). `font`: the registered font family for the texts (caption, axis labels,
/// legend, point texts); `None` draws no text at all (and touches no font).
pub(crate) fn draw_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    font: Option<&str>,
) -> Result<ChartLayout, String> {
    let mut layout = ChartLayout::default();
    let (canvas_w, canvas_h) = root.dim_in_pixel();
    layout.canvas = Some(Rect::at(0, 0, canvas_w as i32, canvas_h as i32));
    // Legend names as drawn: shortened to the widest panel.
    let name_room = LEGEND_WIDTH.end() - 56;
    let legend_names: Vec<String> = chart
        .lines
        .iter()
        .filter(|l| !l.name.is_empty() && !l.points.is_empty())
        .map(|l| &l.name)
        .chain(
            chart
                .markers
                .iter()
                .filter(|m| !m.name.is_empty() && !m.points.is_empty())
                .map(|m| &m.name),
        )
        .map(|n| match font {
            Some(_) => fit_text(n, SMALL_TEXT, name_room),
            None => n.clone(),
        })
        .collect();
    let legend_width = legend_names
        .iter()
        .map(|n| text_size(n, SMALL_TEXT).0 + 56)
        .max()
        .unwrap_or(0)
        .clamp(*LEGEND_WIDTH.start(), *LEGEND_WIDTH.end());
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (plot_area, legend) = match font {
        Some(family) => {
            let body = root
                .margin(8, 0, 0, 0)
                .titled(&chart.caption, (family, 22.0))
                .map_err(err)?;
            if chart.legend_entries() > 0 {
                let width = body.dim_in_pixel().0 as i32;
                let (plot, panel) = body.split_horizontally(width - legend_width);
                (plot, Some((panel, family)))
            } else {
                (body, None)
            }
        }
        None => (root.clone(), None),
    };
    if let Some((panel, _)) = &legend {
        let height = LEGEND_ROW * chart.legend_entries() as i32 + 12;
        let frame = Rectangle::new(
            [(0, 20), (legend_width - 12, 20 + height)],
            RGBColor(170, 170, 170),
        );
        panel.draw(&frame).map_err(err)?;
        let (x0, y0) = panel.get_base_pixel();
        layout.legend = Some(Rect::at(x0, y0 + 20, legend_width - 11, height + 1));
    }
    // Legend entry `i`: the sample centred at `sample`, the name at `text`.
    let entry_at = |i: usize| {
        let y = 20 + 6 + LEGEND_ROW / 2 + LEGEND_ROW * i as i32;
        ((20, y), (40, y))
    };
    let draw_name = |panel: &DrawingArea<DB, Shift>, family: &str, at: (i32, i32), name: &str| {
        let style = (family, SMALL_TEXT)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        panel
            .draw(&Text::new(name.to_owned(), at, style))
            .map_err(err)
    };
    let mut entry = 0;
    // The point texts (pixel anchor, text), placed once every marker is known.
    let mut point_texts: Vec<((i32, i32), &str)> = Vec::new();

    let (x_range, y_range) = chart.ranges();
    let mut builder = ChartBuilder::on(&plot_area);
    builder.margin(15);
    if font.is_some() {
        builder.x_label_area_size(50).y_label_area_size(75);
    }
    let mut ctx = builder
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(err)?;

    let mut mesh = ctx.configure_mesh();
    mesh.light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215));
    if let Some(family) = font {
        mesh.x_desc(chart.x_desc.as_str())
            .y_desc(chart.y_desc.as_str())
            .label_style((family, 14.0))
            .axis_desc_style((family, 16.0));
    }
    mesh.draw().map_err(err)?;
    if font.is_none() {
        // No axes are drawn without label areas: frame the plotting area instead.
        let area = ctx.plotting_area().strip_coord_spec();
        let (w, h) = area.dim_in_pixel();
        let corner = (w as i32 - 1, h as i32 - 1);
        area.draw(&Rectangle::new([(0, 0), corner], BLACK))
            .map_err(err)?;
    }

    if let (Some(family), None) = (font, chart.points().next()) {
        let area = ctx.plotting_area().strip_coord_spec();
        let (w, h) = area.dim_in_pixel();
        let style = (family, 18.0)
            .into_font()
            .color(&RGBColor(120, 120, 120))
            .pos(Pos::new(HPos::Center, VPos::Center));
        let centre = (w as i32 / 2, h as i32 / 2);
        area.draw(&Text::new("no data", centre, style))
            .map_err(err)?;
    }

    if chart.zero_lines {
        let grey = RGBColor(120, 120, 120).stroke_width(1);
        if x_range.start <= 0.0 && 0.0 <= x_range.end {
            let v = [(0.0, y_range.start), (0.0, y_range.end)];
            ctx.draw_series(LineSeries::new(v, grey)).map_err(err)?;
        }
        if y_range.start <= 0.0 && 0.0 <= y_range.end {
            let h = [(x_range.start, 0.0), (x_range.end, 0.0)];
            ctx.draw_series(LineSeries::new(h, grey)).map_err(err)?;
        }
    }

    for line in &chart.lines {
        let color = line.color;
        let points = line.points.iter().copied();
        ctx.draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?;
        ctx.draw_series(
            line.points
                .iter()
                .map(|&p| Circle::new(p, 3, color.filled())),
        )
        .map_err(err)?;
        if font.is_some() {
            for (p, t) in line.points.iter().zip(&line.texts) {
                point_texts.push((ctx.plotting_area().map_coordinate(p), t.as_str()));
            }
        }
        if let (Some((panel, family)), false, false) =
            (&legend, line.name.is_empty(), line.points.is_empty())
        {
            let ((x, y), text) = entry_at(entry);
            entry += 1;
            let sample = PathElement::new(vec![(x - 10, y), (x + 10, y)], color.stroke_width(2));
            panel.draw(&sample).map_err(err)?;
            draw_name(panel, family, text, &legend_names[entry - 1])?;
        }
    }

    for series in &chart.markers {
        if series.points.is_empty() {
            continue;
        }
        // One arm per shape (each element type is concrete); `$make` builds the element at
        // `$at` (data coordinates for the points, pixels for the legend sample).
        macro_rules! draw_markers {
            (|$at:ident, $color:ident| $make:expr) => {{
                ctx.draw_series(series.points.iter().map(|&($at, $color)| $make))
                    .map_err(err)?;
                if let (Some((panel, family)), false) = (&legend, series.name.is_empty()) {
                    let ($at, text) = entry_at(entry);
                    entry += 1;
                    let $color = series.legend_color;
                    panel.draw(&$make).map_err(err)?;
                    draw_name(panel, family, text, &legend_names[entry - 1])?;
                }
            }};
        }
        match series.shape {
            Shape::Circle => draw_markers!(|at, color| Circle::new(at, MARKER, color.filled())),
            Shape::Triangle => {
                draw_markers!(|at, color| TriangleMarker::new(at, MARKER + 2, color.filled()))
            }
            Shape::Square => draw_markers!(|at, color| EmptyElement::at(at)
                + Rectangle::new([(-MARKER, -MARKER), (MARKER, MARKER)], color.filled())),
            Shape::Cross => {
                draw_markers!(|at, color| Cross::new(at, MARKER, color.stroke_width(3)))
            }
            Shape::Ring => draw_markers!(|at, color| EmptyElement::at(at)
                + Circle::new((0, 0), MARKER + 2, color.filled())
                + Circle::new((0, 0), MARKER + 2, BLACK.stroke_width(2))),
        }
    }
    if let Some(family) = font {
        let (xs, ys) = ctx.plotting_area().get_pixel_range();
        let bounds = Rect {
            left: xs.start,
            top: ys.start,
            right: xs.end,
            bottom: ys.end,
        };
        let obstacles: Vec<Rect> = chart
            .points()
            .map(|p| ctx.plotting_area().map_coordinate(&p))
            .map(|(x, y)| {
                Rect::at(
                    x - MARKER - 2,
                    y - MARKER - 2,
                    2 * MARKER + 5,
                    2 * MARKER + 5,
                )
            })
            .collect();
        // Merge the texts of points that coincide on the canvas.
        let mut merged: Vec<((i32, i32), Vec<&str>)> = Vec::new();
        for (at, text) in point_texts {
            let near = merged.iter_mut().find(|(a, _)| {
                (a.0 - at.0).abs() < MERGE_DISTANCE && (a.1 - at.1).abs() < MERGE_DISTANCE
            });
            match near {
                Some((_, texts)) => texts.push(text),
                None => merged.push((at, vec![text])),
            }
        }
        let texts: Vec<String> = merged.iter().map(|(_, t)| merge_texts(t)).collect();
        let anchors: Vec<(i32, i32)> = merged.iter().map(|(a, _)| *a).collect();
        let sizes: Vec<(i32, i32)> = texts
            .iter()
            .map(|t| {
                let (w, h) = text_size(t, POINT_TEXT);
                (w + 2, h + 4)
            })
            .collect();
        let style = (family, POINT_TEXT)
            .into_font()
            .color(&RGBColor(40, 40, 40));
        for (text, spot) in texts
            .into_iter()
            .zip(place_labels(&anchors, &sizes, &obstacles, &bounds))
        {
            match spot {
                Some(r) => {
                    root.draw(&Text::new(
                        text.clone(),
                        (r.left + 1, r.top + 2),
                        style.clone(),
                    ))
                    .map_err(err)?;
                    layout.labels.push((text, r));
                }
                None => layout.hidden += 1,
            }
        }
    }
    root.present().map_err(err)?;
    Ok(layout)
}

/// `chart` as the text of an SVG document.
pub(crate) fn render_svg(chart: &Chart, font: Option<&str>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        draw_chart(&root, chart, font)?;
    }
    Ok(svg)
}

/// Writes `chart` as a PNG file at `path` (texts drawn by [`GlyphBackend`]); returns where its
/// texts went.
pub(crate) fn render_png(
    chart: &Chart,
    path: &Path,
    font: Option<&str>,
) -> Result<ChartLayout, String> {
    let root =
        GlyphBackend(BitMapBackend::new(path, (PLOT_WIDTH, PLOT_HEIGHT))).into_drawing_area();
    draw_chart(&root, chart, font)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(f64, f64)>) -> Chart {
        Chart {
            caption: "a caption".to_owned(),
            x_desc: "x".to_owned(),
            y_desc: "y".to_owned(),
            lines: vec![Line {
                name: "line".to_owned(),
                color: RED,
                texts: points.iter().map(|p| format!("{}", p.0)).collect(),
                points: points.clone(),
            }],
            markers: vec![Markers {
                name: "markers".to_owned(),
                shape: Shape::Ring,
                legend_color: BLUE,
                points: points.iter().map(|&p| (p, BLUE)).collect(),
            }],
            x_zero: false,
            y_zero: true,
            zero_lines: true,
        }
    }

    #[test]
    fn merged_texts_read_in_order() {
        assert_eq!(merge_texts(&["β=0.2", "β=0.1"]), "β=0.1, 0.2");
        assert_eq!(
            merge_texts(&["β=0.3", "β=0.01", "β=0.2", "β=0.5"]),
            "β=0.01 … 0.5 (4 values)"
        );
        assert_eq!(merge_texts(&["a", "b"]), "a, b");
    }

    #[test]
    fn placed_labels_never_overlap_and_stay_inside() {
        let bounds = Rect::at(0, 0, 400, 300);
        // Twenty labels all wanting the same spot, plus one at the very edge.
        let mut anchors = vec![(200, 150); 20];
        anchors.push((399, 0));
        let sizes = vec![(60, 14); anchors.len()];
        let obstacles = [Rect::at(190, 140, 20, 20)];
        let spots = place_labels(&anchors, &sizes, &obstacles, &bounds);
        let placed: Vec<Rect> = spots.iter().flatten().copied().collect();
        assert!(placed.len() >= 8, "{placed:?}");
        for (i, a) in placed.iter().enumerate() {
            assert!(a.inside(&bounds), "{a:?}");
            assert!(!a.intersects(&obstacles[0]), "{a:?}");
            for b in &placed[i + 1..] {
                assert!(!a.intersects(b), "{a:?} {b:?}");
            }
        }
        // The corner label found a place inside the bounds.
        assert!(spots[20].is_some());
    }

    #[test]
    fn ranges_are_never_empty() {
        let r = padded_range(std::iter::empty(), false);
        assert_eq!(r, 0.0..1.0);
        let r = padded_range([f64::NAN, f64::INFINITY].into_iter(), false);
        assert_eq!(r, 0.0..1.0);
        let r = padded_range([0.0, 0.0].into_iter(), false);
        assert!(r.start < 0.0 && r.end > 0.0);
        let r = padded_range([5.0].into_iter(), false);
        assert!(r.start < 5.0 && r.end > 5.0, "{r:?}");
        let r = padded_range([2.0, 4.0].into_iter(), true);
        assert!(
            (r.start + 0.2).abs() < 1e-12 && (r.end - 4.2).abs() < 1e-12,
            "{r:?}"
        );
    }

    #[test]
    fn draws_without_any_font() {
        // An unregistered family fails as soon as text is measured…
        let c = chart(vec![(1.0, 2.0), (3.0, 4.0)]);
        assert!(render_svg(&c, Some("no-such-font-family")).is_err());
        // …and without a font no text is drawn or measured.
        for points in [vec![], vec![(1.0, 1.0)], vec![(1.0, 2.0), (3.0, 4.0)]] {
            let svg = render_svg(&chart(points), None).expect("drawn without a font");
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(!svg.contains("<text"), "{svg}");
        }
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("c.png");
        render_png(&chart(vec![(1.0, 1.0)]), &png, None).expect("PNG without a font");
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
