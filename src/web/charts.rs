//! Charts as inline SVG, drawn on the server: no script, no chart service. Labels and
//! tooltips (`<title>`) are escaped like any other text.

use super::html::esc;

pub const NEGATIVE: &str = "#c0392b";
pub const NEUTRAL: &str = "#d4a017";
pub const POSITIVE: &str = "#2e8b57";
pub const UNSCORED: &str = "#b8c0cc";
pub const LINE: &str = "#2456a6";
pub const THRESHOLD: &str = "#a61b1b";

const W: f64 = 640.0;
const H: f64 = 260.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// One stacked series: name, colour, one value per label.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub values: Vec<f64>,
}

fn open(aria: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{}" font-family="system-ui,sans-serif" font-size="11">"#,
        esc(aria)
    )
}

/// A round upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut x = LEFT;
    for (name, colour) in items {
        out.push_str(&format!(
            r##"<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/><text x="{}" y="15" fill="#333">{}</text>"##,
            x + 14.0,
            esc(name)
        ));
        x += 24.0 + 7.0 * name.chars().count() as f64;
    }
    out
}

/// X positions and which labels to print (at most about ten).
fn x_labels(labels: &[String], centre: impl Fn(usize) -> f64) -> String {
    let step = labels.len().div_ceil(10).max(1);
    let mut out = String::new();
    for (i, l) in labels.iter().enumerate() {
        if i % step != 0 && i + 1 != labels.len() {
            continue;
        }
        out.push_str(&format!(
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            centre(i),
            H - BOTTOM + 16.0,
            esc(l)
        ));
    }
    out
}

fn y_axis(max: f64, min: f64, fmt: impl Fn(f64) -> String) -> String {
    let mut out = String::new();
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=4 {
        let v = min + (max - min) * f64::from(i) / 4.0;
        let y = H - BOTTOM - plot_h * f64::from(i) / 4.0;
        out.push_str(&format!(
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e6eb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&fmt(v))
        ));
    }
    out
}

/// Stacked bars: one bar per label, one segment per series.
pub fn stacked_bars(aria: &str, labels: &[String], series: &[Series<'_>]) -> String {
    let n = labels.len().max(1);
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let max = nice_max(totals.iter().copied().fold(0.0, f64::max));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let bar = (slot * 0.7).max(2.0);
    let centre = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let mut out = open(aria);
    out.push_str(&y_axis(max, 0.0, |v| format!("{v:.0}")));
    for (i, label) in labels.iter().enumerate() {
        let mut y = H - BOTTOM;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = plot_h * v / max;
            y -= h;
            out.push_str(&format!(
                r#"<rect class="bar" x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{}"><title>{}: {} {}</title></rect>"#,
                centre(i) - bar / 2.0,
                s.colour,
                esc(label),
                v,
                esc(s.name)
            ));
        }
    }
    out.push_str(&x_labels(labels, centre));
    let items: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.colour)).collect();
    out.push_str(&legend(&items));
    out.push_str("</svg>");
    out
}

/// A line over labelled points (gaps where a value is missing) on a fixed scale, with
/// an optional threshold line.
pub fn line_chart(
    aria: &str,
    labels: &[String],
    values: &[Option<f64>],
    (min, max): (f64, f64),
    threshold: Option<f64>,
    series_name: &str,
) -> String {
    let n = labels.len().max(1);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let centre = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y_of = |v: f64| H - BOTTOM - plot_h * ((v.clamp(min, max) - min) / (max - min));
    let mut out = open(aria);
    out.push_str(&y_axis(max, min, |v| format!("{v:.1}")));
    let mut legend_items = vec![(series_name, LINE)];
    if let Some(t) = threshold {
        let y = y_of(t);
        out.push_str(&format!(
            r#"<g class="threshold"><line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{THRESHOLD}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="{THRESHOLD}">{t:.1}</text></g>"#,
            W - RIGHT,
            W - RIGHT - 2.0,
            y - 4.0
        ));
        legend_items.push(("threshold", THRESHOLD));
    }
    // Consecutive points are joined; a missing value breaks the line.
    let mut segment: Vec<String> = Vec::new();
    let flush = |segment: &mut Vec<String>, out: &mut String| {
        if segment.len() > 1 {
            out.push_str(&format!(
                r#"<polyline fill="none" stroke="{LINE}" stroke-width="2" points="{}"/>"#,
                segment.join(" ")
            ));
        }
        segment.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => segment.push(format!("{:.1},{:.1}", centre(i), y_of(*v))),
            None => flush(&mut segment, &mut out),
        }
    }
    flush(&mut segment, &mut out);
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            out.push_str(&format!(
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="3.5" fill="{LINE}"><title>{}: {v:.2}</title></circle>"#,
                centre(i),
                y_of(*v),
                esc(labels.get(i).map(String::as_str).unwrap_or(""))
            ));
        }
    }
    out.push_str(&x_labels(labels, centre));
    out.push_str(&legend(&legend_items));
    out.push_str("</svg>");
    out
}

/// Horizontal bars on a 1-5 star scale, one per source, with the threshold marked.
pub fn rating_bars(aria: &str, items: &[(String, Option<f64>)], threshold: f64) -> String {
    let row = 30.0;
    let height = TOP + BOTTOM / 2.0 + row * items.len().max(1) as f64;
    let label_w = 150.0;
    let x0 = label_w;
    let plot_w = W - label_w - RIGHT - 40.0;
    let x_of = |v: f64| x0 + plot_w * ((v.clamp(1.0, 5.0) - 1.0) / 4.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" role="img" aria-label="{}" font-family="system-ui,sans-serif" font-size="11">"#,
        esc(aria)
    );
    for s in 1..=5 {
        let x = x_of(f64::from(s));
        out.push_str(&format!(
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#e3e6eb"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{s}★</text>"##,
            height - BOTTOM / 2.0,
            height - 4.0
        ));
    }
    for (i, (name, v)) in items.iter().enumerate() {
        let y = TOP + row * i as f64;
        let short: String = name.chars().take(22).collect();
        out.push_str(&format!(
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            label_w - 8.0,
            y + row / 2.0 + 4.0,
            esc(&short)
        ));
        if let Some(v) = v {
            let colour = if *v < threshold { THRESHOLD } else { POSITIVE };
            out.push_str(&format!(
                r##"<rect class="bar" x="{x0}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {v:.2} stars</title></rect><text x="{:.1}" y="{:.1}" fill="#333">{v:.2}</text>"##,
                y + 5.0,
                (x_of(*v) - x0).max(1.0),
                row - 10.0,
                esc(name),
                x_of(*v) + 4.0,
                y + row / 2.0 + 4.0
            ));
        }
    }
    let x = x_of(threshold);
    out.push_str(&format!(
        r#"<g class="threshold"><line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{:.1}" stroke="{THRESHOLD}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="{THRESHOLD}">{}</text></g>"#,
        TOP - 8.0,
        height - BOTTOM / 2.0,
        TOP - 12.0,
        crate::rules::star_figure(threshold)
    ));
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_draw_the_threshold() {
        let labels = vec!["<b>".to_string(), "W2".to_string()];
        let svg = stacked_bars(
            "volume",
            &labels,
            &[Series {
                name: "negative",
                colour: NEGATIVE,
                values: vec![2.0, 3.0],
            }],
        );
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        let svg = line_chart(
            "r",
            &labels,
            &[Some(4.5), None],
            (1.0, 5.0),
            Some(4.3),
            "mean",
        );
        assert!(svg.contains("class=\"threshold\"") && svg.contains(">4.3<"));
        let svg = rating_bars("b", &[("store".into(), Some(3.2))], 4.3);
        assert!(svg.contains(">4.3<") && svg.contains(THRESHOLD));
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
