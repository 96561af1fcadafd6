//! Charts for the weekly digest: small PNG images (600 pixels wide) drawn with plotters
//! into an in-memory RGB buffer and encoded with the `png` crate, ready to travel as
//! `cid:` inline parts of an email ([`Chart::to_inline_image`]).
//!
//! Shapes are drawn by plotters; text is laid out and rasterised here with ab_glyph from a
//! font embedded in the binary, so charts look the same on every machine and need no system
//! fonts: `assets/DejaVuSans-subset.ttf`, DejaVu Sans 2.37
//! (Debian's fonts-dejavu-core) cut down to Latin-1 and a few symbols (32 KB). Its licence
//! (Bitstream Vera licence; DejaVu changes are public domain) allows redistribution and
//! modification as long as the licence text travels with it and a modified font is not
//! called "Bitstream" or "Vera"; the text is in `assets/DejaVu-LICENSE.txt`.
//!
//! Every chart carries an alt text that states the figures in words, for mail clients that
//! block images and for screen readers.
//!
//! Empty input is an error, [`ChartError::NoData`], never a blank picture: the digest says
//! "no mentions this week" in words instead of sending an empty chart.

use std::error::Error as StdError;
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::notify::InlineImage;

/// Width of every digest chart, in pixels: fits an email column.
pub const WIDTH: u32 = 600;
/// Height of the trend charts, in pixels. The volume chart grows with its rows.
pub const HEIGHT: u32 = 260;
/// The rating a product page needs to convert, drawn as a dashed reference line.
pub const REFERENCE_RATING: f64 = 4.3;
/// The volume chart shows at most this many bars; the rest are summed into "other".
pub const MAX_SOURCE_ROWS: usize = 12;

const FONT_BYTES: &[u8] = include_bytes!("assets/DejaVuSans-subset.ttf");

const NEGATIVE: RGBColor = RGBColor(214, 39, 40);
const NEUTRAL: RGBColor = RGBColor(170, 170, 170);
const POSITIVE: RGBColor = RGBColor(44, 160, 44);
const MEAN_LINE: RGBColor = RGBColor(20, 40, 90);
const BAR: RGBColor = RGBColor(31, 119, 180);
const GRID: RGBColor = RGBColor(228, 228, 228);
const AXIS: RGBColor = RGBColor(150, 150, 150);
const INK: RGBColor = RGBColor(40, 40, 40);
const MUTED: RGBColor = RGBColor(110, 110, 110);
/// Line colours for sources, in order; neither red nor green, which mean sentiment here.
const SOURCE_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(90, 90, 90),
];

/// Height of the header strip: title on one row, legend on the next.
const HEADER: u32 = 42;
/// Text sizes in pixels (ascender to descender).
const TITLE_SIZE: f32 = 16.0;
const LABEL_SIZE: f32 = 13.0;

/// A rendered chart: PNG bytes, their size, and the same information in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The figures in words, for the `alt` attribute and the plain-text part.
    pub alt: String,
}

impl Chart {
    /// The chart as an inline image for [`crate::notify::compose`]; the HTML part refers to
    /// it as `<img src="cid:{content_id}" width=.. height=.. alt=..>`.
    pub fn to_inline_image(&self, content_id: &str) -> InlineImage {
        InlineImage {
            content_id: content_id.to_string(),
            png: self.png.clone(),
        }
    }
}

/// Why a chart could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Nothing to draw (no weeks, no sources, or only zeros and gaps). The digest states
    /// this in words instead.
    #[error("no data to chart: {0}")]
    NoData(&'static str),
    #[error("the embedded chart font cannot be loaded")]
    Font,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
    #[error("cannot encode the chart as PNG: {0}")]
    Encode(String),
}

/// One week of the sentiment trend, oldest first in the slice.
#[derive(Debug, Clone, PartialEq)]
pub struct WeekSentiment {
    /// Short axis label, for example "W45".
    pub label: String,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    /// Mean sentiment score of the week, -1 to 1; `None` when the week has no scores.
    pub mean_score: Option<f64>,
}

impl WeekSentiment {
    pub fn total(&self) -> u64 {
        self.negative + self.neutral + self.positive
    }
}

/// One source's mean star rating per week, oldest first; `None` for a week without ratings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RatingSeries {
    pub source: String,
    pub points: Vec<(String, Option<f64>)>,
}

type DrawResult = Result<(), Box<dyn StdError>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

// ---------------------------------------------------------------------------------------
// Text. Plotters' own ab_glyph text path ignores glyph side bearings (uneven letter
// spacing), so shapes are drawn with plotters and text is laid out and blended here, from
// the embedded font, after the shapes.

fn font() -> Result<&'static FontRef<'static>, ChartError> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
        .ok_or(ChartError::Font)
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Center,
    Right,
}

/// Vertical anchor: the top of the capitals or their middle.
#[derive(Clone, Copy)]
enum VAlign {
    Top,
    Middle,
}

struct Label {
    text: String,
    x: f32,
    y: f32,
    size: f32,
    color: RGBColor,
    align: Align,
    valign: VAlign,
}

/// Text to draw once the shapes are done.
#[derive(Default)]
struct Labels(Vec<Label>);

impl Labels {
    fn add(
        &mut self,
        text: impl Into<String>,
        (x, y): (i32, i32),
        size: f32,
        color: RGBColor,
        align: Align,
        valign: VAlign,
    ) {
        self.0.push(Label {
            text: text.into(),
            x: x as f32,
            y: y as f32,
            size,
            color,
            align,
            valign,
        });
    }
}

/// Glyphs with their pen offsets, and the advance width of the whole text.
fn layout(font: &FontRef<'static>, text: &str, size: f32) -> (Vec<(GlyphId, f32)>, f32) {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut pen = 0.0f32;
    let mut glyphs = Vec::with_capacity(text.len());
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push((id, pen));
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, pen)
}

/// Width in pixels of a text at a size.
fn text_width(text: &str, size: f32) -> f32 {
    font().map(|f| layout(f, text, size).1).unwrap_or(0.0)
}

fn cap_height(font: &FontRef<'static>, size: f32) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    font.outline(font.glyph_id('H'))
        // Unscaled bounds; which of min/max holds the top depends on ab_glyph's y flip.
        .map(|o| o.bounds.min.y.abs().max(o.bounds.max.y.abs()) * scaled.v_scale_factor())
        .unwrap_or(size * 0.6)
}

/// Blends one label into the RGB buffer.
fn draw_label(rgb: &mut [u8], width: u32, height: u32, font: &FontRef<'static>, l: &Label) {
    let (glyphs, advance) = layout(font, &l.text, l.size);
    let x0 = match l.align {
        Align::Left => l.x,
        Align::Center => l.x - advance / 2.0,
        Align::Right => l.x - advance,
    };
    let cap = cap_height(font, l.size);
    let baseline = match l.valign {
        VAlign::Top => l.y + cap,
        VAlign::Middle => l.y + cap / 2.0,
    };
    let ink = [l.color.0, l.color.1, l.color.2];
    for (id, dx) in glyphs {
        let glyph = id.with_scale_and_position(l.size, point(x0 + dx, baseline));
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let x = bounds.min.x as i64 + gx as i64;
            let y = bounds.min.y as i64 + gy as i64;
            if x < 0 || y < 0 || x >= width as i64 || y >= height as i64 {
                return;
            }
            let i = (y as usize * width as usize + x as usize) * 3;
            let c = coverage.clamp(0.0, 1.0);
            for (k, v) in ink.iter().enumerate() {
                let old = rgb[i + k] as f32;
                rgb[i + k] = (old + (*v as f32 - old) * c).round() as u8;
            }
        });
    }
}

// ---------------------------------------------------------------------------------------
// Rendering.

/// Draws shapes (plotters) and then text into a white RGB buffer; encodes it as PNG.
fn render(
    width: u32,
    height: u32,
    alt: String,
    draw: impl FnOnce(&Area<'_>, &mut Labels) -> DrawResult,
) -> Result<Chart, ChartError> {
    let font = font()?;
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    let mut labels = Labels::default();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root, &mut labels).map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    for label in &labels.0 {
        draw_label(&mut rgb, width, height, font, label);
    }
    let png = encode_png(&rgb, width, height)?;
    Ok(Chart {
        png,
        width,
        height,
        alt,
    })
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    let enc_err = |e: png::EncodingError| ChartError::Encode(e.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(enc_err)?;
    writer.write_image_data(rgb).map_err(enc_err)?;
    writer.finish().map_err(enc_err)?;
    Ok(out)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    Box,
    Line,
    Dashed,
}

/// Title on the first row of the header strip, legend entries on the second; entries that
/// do not fit are counted as "+N more" (the alt text names them all).
fn draw_header(
    area: &Area<'_>,
    labels: &mut Labels,
    title: &str,
    legend: &[(String, RGBColor, Swatch)],
) -> DrawResult {
    labels.add(title, (10, 7), TITLE_SIZE, INK, Align::Left, VAlign::Top);
    let (width, _) = area.dim_in_pixel();
    let y = 31;
    let mut x = 10i32;
    for (i, (label, color, swatch)) in legend.iter().enumerate() {
        let needed = 18 + text_width(label, LABEL_SIZE).ceil() as i32 + 16;
        if x + needed > width as i32 - 10 {
            let more = format!("+{} more", legend.len() - i);
            labels.add(more, (x, y), LABEL_SIZE, MUTED, Align::Left, VAlign::Middle);
            break;
        }
        match swatch {
            Swatch::Box => {
                area.draw(&Rectangle::new(
                    [(x, y - 5), (x + 11, y + 6)],
                    color.filled(),
                ))?;
            }
            Swatch::Line => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 14, y)],
                    color.stroke_width(2),
                ))?;
            }
            Swatch::Dashed => {
                for dx in [0, 6, 12] {
                    area.draw(&PathElement::new(
                        vec![(x + dx, y), (x + dx + 3, y)],
                        color.stroke_width(1),
                    ))?;
                }
            }
        }
        labels.add(
            label.clone(),
            (x + 18, y),
            LABEL_SIZE,
            INK,
            Align::Left,
            VAlign::Middle,
        );
        x += needed;
    }
    Ok(())
}

/// Week labels under the x axis, thinned out when they would overlap (the latest week is
/// always labelled). `centers` are the pixel positions of the segment centres on the axis.
fn draw_week_labels(labels: &mut Labels, names: &[String], centers: &[(i32, i32)]) {
    let spacing = match centers {
        [a, b, ..] => (b.0 - a.0).max(1) as f32,
        _ => f32::MAX,
    };
    let widest = names
        .iter()
        .map(|n| text_width(n, LABEL_SIZE))
        .fold(0.0f32, f32::max);
    let every = ((widest + 8.0) / spacing).ceil().max(1.0) as usize;
    let n = names.len().min(centers.len());
    for i in 0..n {
        if (n - 1 - i).is_multiple_of(every) {
            let (x, y) = centers[i];
            labels.add(
                names[i].clone(),
                (x, y + 6),
                LABEL_SIZE,
                INK,
                Align::Center,
                VAlign::Top,
            );
        }
    }
}

/// Splits a series with gaps into runs of consecutive known points.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(u32, f64)>> {
    let mut out: Vec<Vec<(u32, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => current.push((i as u32, *v)),
            _ => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A count axis from 0: `(top, step)`, with `top` above the largest value (some
/// headroom), a multiple of a 1-2-5 `step`, and at most five steps.
fn count_axis(max: u64) -> (u64, u64) {
    let padded = (max + max / 8 + 1).max(4);
    let raw = padded as f64 / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw - 1e-9)
        .unwrap_or(10.0 * magnitude);
    let step = (step.round() as u64).max(1);
    (padded.div_ceil(step) * step, step)
}

fn signed(score: f64) -> String {
    format!("{score:+.2}")
}

fn stars(value: f64) -> String {
    format!("{value:.1}")
}

/// The stacked weekly sentiment volumes, in words.
pub fn sentiment_alt(weeks: &[WeekSentiment]) -> String {
    let Some(last) = weeks.last() else {
        return "No mentions to chart.".to_string();
    };
    let first = &weeks[0];
    let mut alt = format!(
        "Mentions per week by sentiment over the last {} weeks ({} to {}), with the mean \
         sentiment score on a scale from -1 to +1.",
        weeks.len(),
        first.label,
        last.label
    );
    let describe = |w: &WeekSentiment| {
        let mut s = format!(
            "{} mentions: {} negative, {} neutral, {} positive",
            w.total(),
            w.negative,
            w.neutral,
            w.positive
        );
        if let Some(m) = w.mean_score.filter(|m| m.is_finite()) {
            s.push_str(&format!("; mean sentiment {}", signed(m)));
        }
        s
    };
    alt.push_str(&format!(" Last week ({}): {}.", last.label, describe(last)));
    if weeks.len() >= 2 {
        let prev = &weeks[weeks.len() - 2];
        alt.push_str(&format!(
            " Week before ({}): {}.",
            prev.label,
            describe(prev)
        ));
    }
    if weeks.len() > 2 {
        if let Some(peak) = weeks.iter().rev().max_by_key(|w| w.total()) {
            alt.push_str(&format!(
                " Busiest week: {} with {} mentions.",
                peak.label,
                peak.total()
            ));
        }
    }
    let negative: u64 = weeks.iter().map(|w| w.negative).sum();
    let total: u64 = weeks.iter().map(WeekSentiment::total).sum();
    if total > 0 {
        alt.push_str(&format!(
            " Over the period {} of {} mentions were negative ({}%).",
            negative,
            total,
            (negative as f64 * 100.0 / total as f64).round()
        ));
    }
    alt
}

/// 12-week sentiment trend: stacked negative (red), neutral (grey) and positive (green)
/// volumes per week, oldest first, with the mean sentiment as a line on a secondary axis
/// from -1 to +1 (gaps where a week has no mean). 600 x 260 pixels.
///
/// Errors with [`ChartError::NoData`] when `weeks` is empty or has neither a mention nor
/// a mean score.
pub fn sentiment_trend(weeks: &[WeekSentiment]) -> Result<Chart, ChartError> {
    if weeks.is_empty() {
        return Err(ChartError::NoData("no weeks"));
    }
    if weeks
        .iter()
        .all(|w| w.total() == 0 && w.mean_score.is_none())
    {
        return Err(ChartError::NoData("no mentions in any week"));
    }
    let alt = sentiment_alt(weeks);
    let names: Vec<String> = weeks.iter().map(|w| w.label.clone()).collect();
    let n = weeks.len() as u32;
    let (top, step) = count_axis(weeks.iter().map(WeekSentiment::total).max().unwrap_or(0));
    let topf = top as f64;
    // The mean (-1 to 1) is drawn in the count coordinates: -1 at 0, +1 at the top.
    let mean_y = |m: f64| (m.clamp(-1.0, 1.0) + 1.0) / 2.0 * topf;
    render(WIDTH, HEIGHT, alt, |root, labels| {
        let (header, body) = root.split_vertically(HEADER);
        draw_header(
            &header,
            labels,
            "Mentions per week by sentiment",
            &[
                ("negative".into(), NEGATIVE, Swatch::Box),
                ("neutral".into(), NEUTRAL, Swatch::Box),
                ("positive".into(), POSITIVE, Swatch::Box),
                (
                    "mean sentiment (right axis)".into(),
                    MEAN_LINE,
                    Swatch::Line,
                ),
            ],
        )?;
        let mut chart = ChartBuilder::on(&body)
            .margin_left(8)
            .margin_right(8)
            .margin_top(8)
            .margin_bottom(4)
            .x_label_area_size(20)
            .y_label_area_size(34)
            .right_y_label_area_size(38)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..topf)?;
        let ticks: Vec<u64> = (0..=top).step_by(step as usize).collect();
        chart.draw_series(ticks.iter().skip(1).map(|&t| {
            PathElement::new(
                vec![
                    (SegmentValue::Exact(0), t as f64),
                    (SegmentValue::Last, t as f64),
                ],
                GRID.stroke_width(1),
            )
        }))?;
        let mut bars = Vec::new();
        for (i, w) in weeks.iter().enumerate() {
            let i = i as u32;
            let mut base = 0u64;
            for (count, color) in [
                (w.negative, NEGATIVE),
                (w.neutral, NEUTRAL),
                (w.positive, POSITIVE),
            ] {
                if count == 0 {
                    continue;
                }
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), base as f64),
                        (SegmentValue::Exact(i + 1), (base + count) as f64),
                    ],
                    color.filled(),
                );
                r.set_margin(0, 0, 7, 7);
                bars.push(r);
                base += count;
            }
        }
        chart.draw_series(bars)?;
        // Axes: counts on the left, mean sentiment on the right, weeks below.
        chart.draw_series([
            PathElement::new(
                vec![(SegmentValue::Exact(0), 0.0), (SegmentValue::Last, 0.0)],
                AXIS.stroke_width(1),
            ),
            PathElement::new(
                vec![
                    (SegmentValue::Exact(0), 0.0),
                    (SegmentValue::Exact(0), topf),
                ],
                AXIS.stroke_width(1),
            ),
            PathElement::new(
                vec![(SegmentValue::Last, 0.0), (SegmentValue::Last, topf)],
                MEAN_LINE.stroke_width(1),
            ),
        ])?;
        chart.draw_series(DashedLineSeries::new(
            vec![
                (SegmentValue::Exact(0), mean_y(0.0)),
                (SegmentValue::Last, mean_y(0.0)),
            ],
            3,
            3,
            MUTED.stroke_width(1),
        ))?;
        for t in &ticks {
            let (px, py) = chart.backend_coord(&(SegmentValue::Exact(0), *t as f64));
            labels.add(
                t.to_string(),
                (px - 6, py),
                LABEL_SIZE,
                INK,
                Align::Right,
                VAlign::Middle,
            );
        }
        for m in [-1.0, -0.5, 0.0, 0.5, 1.0] {
            let (px, py) = chart.backend_coord(&(SegmentValue::Last, mean_y(m)));
            root.draw(&PathElement::new(
                vec![(px, py), (px + 4, py)],
                MEAN_LINE.stroke_width(1),
            ))?;
            let text = if m == 0.0 {
                "0".to_string()
            } else {
                format!("{m:+.1}")
            };
            labels.add(
                text,
                (px + 7, py),
                LABEL_SIZE,
                MEAN_LINE,
                Align::Left,
                VAlign::Middle,
            );
        }
        let centers: Vec<(i32, i32)> = (0..n)
            .map(|i| chart.backend_coord(&(SegmentValue::CenterOf(i), 0.0)))
            .collect();
        draw_week_labels(labels, &names, &centers);
        let means: Vec<Option<f64>> = weeks.iter().map(|w| w.mean_score).collect();
        for run in runs(&means) {
            let points: Vec<(SegmentValue<u32>, f64)> = run
                .iter()
                .map(|(i, v)| (SegmentValue::CenterOf(*i), mean_y(*v)))
                .collect();
            chart.draw_series(LineSeries::new(points.clone(), MEAN_LINE.stroke_width(2)))?;
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, MEAN_LINE.filled())),
            )?;
        }
        Ok(())
    })
}

/// The weekly ratings per source, in words.
pub fn rating_alt(series: &[RatingSeries]) -> String {
    let labels = week_labels(series);
    let (Some(first), Some(last)) = (labels.first(), labels.last()) else {
        return "No ratings to chart.".to_string();
    };
    let mut alt = format!(
        "Mean star rating per week by source, {first} to {last}; the dashed line marks the \
         {} stars a product page needs to convert.",
        stars(REFERENCE_RATING)
    );
    for s in series {
        let known: Vec<(&String, f64)> = s
            .points
            .iter()
            .filter_map(|(l, v)| v.filter(|v| v.is_finite()).map(|v| (l, v)))
            .collect();
        let Some(&(latest_label, latest)) = known.last() else {
            alt.push_str(&format!(" {}: no ratings in the period.", s.source));
            continue;
        };
        if latest_label == last {
            alt.push_str(&format!(
                " {}: {} stars in {}",
                s.source,
                stars(latest),
                latest_label
            ));
        } else {
            alt.push_str(&format!(
                " {}: no ratings in {}, latest {} stars in {}",
                s.source,
                last,
                stars(latest),
                latest_label
            ));
        }
        let lo = known.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = known.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        if known.len() > 1 {
            alt.push_str(&format!(
                ", {} at the start of the period, range {} to {}",
                stars(known[0].1),
                stars(lo),
                stars(hi)
            ));
        }
        if latest < REFERENCE_RATING {
            alt.push_str(&format!(", below {}", stars(REFERENCE_RATING)));
        }
        alt.push('.');
    }
    alt
}

/// The week labels of all series, in order of first appearance.
fn week_labels(series: &[RatingSeries]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for s in series {
        for (label, _) in &s.points {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
    }
    labels
}

/// 12-week rating trend: one line per source (mean stars per week, gaps where a week has
/// no rating) on a 1 to 5 axis, with a dashed reference line at 4.3 labelled "4.3".
/// Series may have different weeks; the x axis is the union of their labels in order of
/// first appearance. 600 x 260 pixels.
///
/// Errors with [`ChartError::NoData`] when there is no series or no rating at all.
pub fn rating_trend(series: &[RatingSeries]) -> Result<Chart, ChartError> {
    if series.is_empty() {
        return Err(ChartError::NoData("no rated source"));
    }
    if !series
        .iter()
        .any(|s| s.points.iter().any(|(_, v)| v.is_some_and(f64::is_finite)))
    {
        return Err(ChartError::NoData("no ratings in any week"));
    }
    let alt = rating_alt(series);
    let names = week_labels(series);
    let n = names.len() as u32;
    let legend: Vec<(String, RGBColor, Swatch)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                shorten(&s.source, 22),
                SOURCE_COLORS[i % SOURCE_COLORS.len()],
                Swatch::Line,
            )
        })
        .chain(std::iter::once((
            format!("{} stars", stars(REFERENCE_RATING)),
            MUTED,
            Swatch::Dashed,
        )))
        .collect();
    render(WIDTH, HEIGHT, alt, |root, labels| {
        let (header, body) = root.split_vertically(HEADER);
        draw_header(&header, labels, "Mean star rating per week", &legend)?;
        let mut chart = ChartBuilder::on(&body)
            .margin_left(8)
            .margin_right(34)
            .margin_top(8)
            .margin_bottom(4)
            .x_label_area_size(20)
            .y_label_area_size(34)
            .build_cartesian_2d((0..n - 1).into_segmented(), 1.0f64..5.0)?;
        chart.draw_series((2..=5).map(|t| {
            PathElement::new(
                vec![
                    (SegmentValue::Exact(0), t as f64),
                    (SegmentValue::Last, t as f64),
                ],
                GRID.stroke_width(1),
            )
        }))?;
        chart.draw_series([
            PathElement::new(
                vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Last, 1.0)],
                AXIS.stroke_width(1),
            ),
            PathElement::new(
                vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Exact(0), 5.0)],
                AXIS.stroke_width(1),
            ),
        ])?;
        for t in 1..=5 {
            let (px, py) = chart.backend_coord(&(SegmentValue::Exact(0), t as f64));
            labels.add(
                t.to_string(),
                (px - 6, py),
                LABEL_SIZE,
                INK,
                Align::Right,
                VAlign::Middle,
            );
        }
        chart.draw_series(DashedLineSeries::new(
            vec![
                (SegmentValue::Exact(0), REFERENCE_RATING),
                (SegmentValue::Last, REFERENCE_RATING),
            ],
            6,
            4,
            MUTED.stroke_width(1),
        ))?;
        let (px, py) = chart.backend_coord(&(SegmentValue::Last, REFERENCE_RATING));
        labels.add(
            stars(REFERENCE_RATING),
            (px + 4, py),
            LABEL_SIZE,
            MUTED,
            Align::Left,
            VAlign::Middle,
        );
        let centers: Vec<(i32, i32)> = (0..n)
            .map(|i| chart.backend_coord(&(SegmentValue::CenterOf(i), 1.0)))
            .collect();
        draw_week_labels(labels, &names, &centers);
        for (si, s) in series.iter().enumerate() {
            let color = SOURCE_COLORS[si % SOURCE_COLORS.len()];
            let values: Vec<Option<f64>> = names
                .iter()
                .map(|l| {
                    s.points
                        .iter()
                        .find(|(pl, _)| pl == l)
                        .and_then(|(_, v)| *v)
                        .map(|v| v.clamp(1.0, 5.0))
                })
                .collect();
            for run in runs(&values) {
                let points: Vec<(SegmentValue<u32>, f64)> = run
                    .iter()
                    .map(|(i, v)| (SegmentValue::CenterOf(*i), *v))
                    .collect();
                chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )?;
            }
        }
        Ok(())
    })
}

/// Shortens a name to `max_chars` by cutting out its middle, so that names sharing a long
/// prefix stay distinct ("A rather long…number 19").
fn shorten(s: &str, max_chars: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max_chars || max_chars < 5 {
        return s.to_string();
    }
    let tail = (max_chars - 1) * 2 / 5;
    let head = max_chars - 1 - tail;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Rows largest first, ties by name.
fn sorted_rows(rows: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut sorted: Vec<(String, u64)> = rows.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted
}

/// The rows the volume chart draws: largest first (ties by name), at most
/// [`MAX_SOURCE_ROWS`], the rest summed into one "other (N sources)" row.
fn volume_rows(rows: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut sorted = sorted_rows(rows);
    if sorted.len() > MAX_SOURCE_ROWS {
        let rest = sorted.split_off(MAX_SOURCE_ROWS - 1);
        let sum = rest.iter().map(|r| r.1).sum();
        sorted.push((format!("other ({} sources)", rest.len()), sum));
    }
    sorted
}

/// This week's volume by source, in words.
pub fn volume_alt(rows: &[(String, u64)]) -> String {
    if rows.is_empty() {
        return "No mentions to chart.".to_string();
    }
    let sorted = sorted_rows(rows);
    let total: u64 = sorted.iter().map(|r| r.1).sum();
    let parts: Vec<String> = sorted
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    format!(
        "Mentions this week by source, {total} in all: {}.",
        parts.join(", ")
    )
}

/// This week's mentions per source as horizontal bars, largest first, each with its count.
/// 600 pixels wide; 260 high for up to eight sources, taller for more (at most
/// [`MAX_SOURCE_ROWS`] bars, the rest summed into "other").
///
/// Errors with [`ChartError::NoData`] when `rows` is empty or every count is zero.
pub fn volume_by_source(rows: &[(String, u64)]) -> Result<Chart, ChartError> {
    if rows.is_empty() {
        return Err(ChartError::NoData("no sources"));
    }
    if rows.iter().all(|r| r.1 == 0) {
        return Err(ChartError::NoData("no mentions from any source"));
    }
    let alt = volume_alt(rows);
    let shown = volume_rows(rows);
    let n = shown.len() as u32;
    let height = volume_height(shown.len());
    let names: Vec<String> = shown.iter().map(|r| shorten(&r.0, 28)).collect();
    let max = shown.iter().map(|r| r.1).max().unwrap_or(0);
    // Headroom for the count printed after the longest bar.
    let (top, step) = count_axis(max + max / 8);
    let label_width = names
        .iter()
        .map(|n| text_width(n, LABEL_SIZE).ceil() as u32 + 14)
        .max()
        .unwrap_or(40)
        .clamp(40, 220);
    render(WIDTH, height, alt, |root, labels| {
        let (header, body) = root.split_vertically(HEADER - 14);
        draw_header(&header, labels, "Mentions this week by source", &[])?;
        let mut chart = ChartBuilder::on(&body)
            .margin_left(8)
            .margin_right(16)
            .margin_top(4)
            .margin_bottom(4)
            .x_label_area_size(20)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..top as f64, (0..n - 1).into_segmented())?;
        let ticks: Vec<u64> = (0..=top).step_by(step as usize).collect();
        chart.draw_series(ticks.iter().skip(1).map(|&t| {
            PathElement::new(
                vec![
                    (t as f64, SegmentValue::Exact(0)),
                    (t as f64, SegmentValue::Last),
                ],
                GRID.stroke_width(1),
            )
        }))?;
        // Row 0 (the largest) is drawn at the top: segment n-1-i holds row i.
        let mut bars = Vec::new();
        for (i, (_, count)) in shown.iter().enumerate() {
            let j = n - 1 - i as u32;
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(j)),
                    (*count as f64, SegmentValue::Exact(j + 1)),
                ],
                BAR.filled(),
            );
            r.set_margin(4, 4, 0, 0);
            bars.push(r);
        }
        chart.draw_series(bars)?;
        chart.draw_series([
            PathElement::new(
                vec![
                    (0.0, SegmentValue::Exact(0)),
                    (top as f64, SegmentValue::Exact(0)),
                ],
                AXIS.stroke_width(1),
            ),
            PathElement::new(
                vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
                AXIS.stroke_width(1),
            ),
        ])?;
        for t in &ticks {
            let (px, py) = chart.backend_coord(&(*t as f64, SegmentValue::Exact(0)));
            labels.add(
                t.to_string(),
                (px, py + 6),
                LABEL_SIZE,
                MUTED,
                Align::Center,
                VAlign::Top,
            );
        }
        for (i, (_, count)) in shown.iter().enumerate() {
            let j = n - 1 - i as u32;
            let (px, py) = chart.backend_coord(&(0.0, SegmentValue::CenterOf(j)));
            labels.add(
                names[i].clone(),
                (px - 6, py),
                LABEL_SIZE,
                INK,
                Align::Right,
                VAlign::Middle,
            );
            let (px, py) = chart.backend_coord(&(*count as f64, SegmentValue::CenterOf(j)));
            labels.add(
                count.to_string(),
                (px + 5, py),
                LABEL_SIZE,
                INK,
                Align::Left,
                VAlign::Middle,
            );
        }
        Ok(())
    })
}

/// Height of the volume chart for a number of drawn rows.
fn volume_height(rows: usize) -> u32 {
    if rows <= 8 {
        HEIGHT
    } else {
        HEADER + 40 + 24 * rows as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Decodes a PNG and returns (width, height, RGB pixels).
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("valid PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("valid PNG data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let pixels = buf[..info.buffer_size()]
            .chunks_exact(3)
            .map(|c| [c[0], c[1], c[2]])
            .collect();
        (info.width, info.height, pixels)
    }

    fn count_near(pixels: &[[u8; 3]], color: RGBColor) -> usize {
        pixels
            .iter()
            .filter(|p| {
                (p[0] as i32 - color.0 as i32).abs() <= 3
                    && (p[1] as i32 - color.1 as i32).abs() <= 3
                    && (p[2] as i32 - color.2 as i32).abs() <= 3
            })
            .count()
    }

    /// Checks the chart decodes at its stated size and is not blank.
    fn assert_real_picture(chart: &Chart, width: u32, height: u32) -> Vec<[u8; 3]> {
        assert_eq!(&chart.png[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, pixels) = decode(&chart.png);
        assert_eq!((w, h), (width, height));
        assert_eq!((chart.width, chart.height), (width, height));
        let distinct: HashSet<[u8; 3]> = pixels.iter().copied().collect();
        assert!(distinct.len() > 20, "only {} colours", distinct.len());
        let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
        assert!(white < pixels.len() * 97 / 100, "almost blank");
        // Anti-aliased text leaves many grey levels: labels were drawn.
        let greys = distinct
            .iter()
            .filter(|p| p[0] == p[1] && p[1] == p[2] && p[0] > 30 && p[0] < 225)
            .count();
        assert!(greys > 10, "no text rendered ({greys} grey levels)");
        pixels
    }

    fn weeks() -> Vec<WeekSentiment> {
        (0..12)
            .map(|i| WeekSentiment {
                label: format!("W{}", 34 + i),
                negative: 3 + (i % 4),
                neutral: 10 + i,
                positive: 12 + (i * 7) % 5,
                mean_score: if i == 5 {
                    None
                } else {
                    Some(0.3 - i as f64 * 0.05)
                },
            })
            .chain(std::iter::once(WeekSentiment {
                label: "W46".into(),
                negative: 10,
                neutral: 20,
                positive: 12,
                mean_score: Some(-0.12),
            }))
            .skip(1)
            .collect()
    }

    #[test]
    fn sentiment_trend_draws_bars_line_and_says_the_figures() {
        let weeks = weeks();
        assert_eq!(weeks.len(), 12);
        let chart = sentiment_trend(&weeks).unwrap();
        let pixels = assert_real_picture(&chart, WIDTH, HEIGHT);
        assert!(count_near(&pixels, NEGATIVE) > 300, "red bars");
        assert!(count_near(&pixels, NEUTRAL) > 300, "grey bars");
        assert!(count_near(&pixels, POSITIVE) > 300, "green bars");
        assert!(count_near(&pixels, MEAN_LINE) > 100, "mean line");
        assert!(chart.alt.contains("12 weeks (W35 to W46)"), "{}", chart.alt);
        assert!(
            chart
                .alt
                .contains("Last week (W46): 42 mentions: 10 negative, 20 neutral, 12 positive; mean sentiment -0.12"),
            "{}",
            chart.alt
        );
        assert!(chart.alt.contains("Week before (W45)"), "{}", chart.alt);
    }

    #[test]
    fn sentiment_trend_of_one_week_and_of_nothing() {
        let one = [WeekSentiment {
            label: "W1".into(),
            negative: 1,
            neutral: 0,
            positive: 0,
            mean_score: None,
        }];
        let chart = sentiment_trend(&one).unwrap();
        assert_real_picture(&chart, WIDTH, HEIGHT);
        assert!(chart.alt.contains("1 mentions: 1 negative"));
        assert!(matches!(sentiment_trend(&[]), Err(ChartError::NoData(_))));
        let zeros = [WeekSentiment {
            label: "W1".into(),
            negative: 0,
            neutral: 0,
            positive: 0,
            mean_score: None,
        }];
        let err = sentiment_trend(&zeros).unwrap_err();
        assert!(err.to_string().contains("no data"), "{err}");
    }

    #[test]
    fn rating_trend_draws_lines_and_reference() {
        let labels: Vec<String> = (35..47).map(|w| format!("W{w}")).collect();
        let series = vec![
            RatingSeries {
                source: "App Store".into(),
                points: labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), Some(4.6 - i as f64 * 0.05)))
                    .collect(),
            },
            RatingSeries {
                source: "Google Play".into(),
                points: labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), if i >= 10 { None } else { Some(3.9) }))
                    .collect(),
            },
        ];
        let chart = rating_trend(&series).unwrap();
        let pixels = assert_real_picture(&chart, WIDTH, HEIGHT);
        assert!(count_near(&pixels, SOURCE_COLORS[0]) > 200);
        assert!(count_near(&pixels, SOURCE_COLORS[1]) > 150);
        let alt = &chart.alt;
        assert!(alt.contains("W35 to W46"), "{alt}");
        assert!(alt.contains("App Store: 4.0 stars in W46"), "{alt}");
        assert!(alt.contains("below 4.3"), "{alt}");
        assert!(
            alt.contains("Google Play: no ratings in W46, latest 3.9 stars in W44"),
            "{alt}"
        );
        assert!(matches!(rating_trend(&[]), Err(ChartError::NoData(_))));
        let empty = [RatingSeries {
            source: "x".into(),
            points: vec![("W1".into(), None)],
        }];
        assert!(matches!(rating_trend(&empty), Err(ChartError::NoData(_))));
    }

    #[test]
    fn volume_by_source_bars_largest_first() {
        let rows = vec![
            ("Mastodon".to_string(), 3),
            ("App Store".to_string(), 20),
            ("Google Play".to_string(), 12),
        ];
        let chart = volume_by_source(&rows).unwrap();
        let pixels = assert_real_picture(&chart, WIDTH, HEIGHT);
        assert!(count_near(&pixels, BAR) > 1000);
        assert_eq!(
            chart.alt,
            "Mentions this week by source, 35 in all: App Store 20, Google Play 12, Mastodon 3."
        );
        assert!(matches!(volume_by_source(&[]), Err(ChartError::NoData(_))));
        assert!(matches!(
            volume_by_source(&[("a".into(), 0)]),
            Err(ChartError::NoData(_))
        ));
    }

    #[test]
    fn volume_by_source_grows_and_folds_the_tail() {
        let rows: Vec<(String, u64)> = (0..20).map(|i| (format!("source {i:02}"), i + 1)).collect();
        let shown = volume_rows(&rows);
        assert_eq!(shown.len(), MAX_SOURCE_ROWS);
        assert_eq!(shown[0], ("source 19".to_string(), 20));
        let tail: u64 = (1..=9).sum();
        assert_eq!(
            shown.last().unwrap(),
            &("other (9 sources)".to_string(), tail)
        );
        let chart = volume_by_source(&rows).unwrap();
        let height = volume_height(MAX_SOURCE_ROWS);
        assert_real_picture(&chart, WIDTH, height);
        assert!(chart.alt.contains("210 in all"), "{}", chart.alt);
    }

    #[test]
    fn charts_are_deterministic_and_inline_ready() {
        let a = sentiment_trend(&weeks()).unwrap();
        let b = sentiment_trend(&weeks()).unwrap();
        assert_eq!(a.png, b.png);
        let img = a.to_inline_image("sentiment");
        assert_eq!(img.content_id, "sentiment");
        assert_eq!(img.png, a.png);
    }

    #[test]
    fn long_names_lose_their_middle() {
        assert_eq!(shorten("App Store", 22), "App Store");
        let a = shorten("A rather long source name number 19", 20);
        let b = shorten("A rather long source name number 18", 20);
        assert_eq!(a.chars().count(), 20);
        assert!(a.starts_with("A rather") && a.ends_with("19") && a.contains('…'));
        assert_ne!(a, b);
    }

    #[test]
    fn count_axis_is_roomy_and_round() {
        assert_eq!(count_axis(0), (4, 1));
        assert_eq!(count_axis(42), (50, 10));
        for max in [0u64, 1, 3, 7, 9, 20, 42, 99, 120, 999, 12345] {
            let (top, step) = count_axis(max);
            assert!(top > max, "{max} -> {top}");
            assert_eq!(top % step, 0);
            assert!(top / step <= 5, "{max} -> {top}/{step}");
            let lead = step / 10u64.pow(step.ilog10());
            assert!([1, 2, 5].contains(&lead), "{step}");
        }
    }
}
