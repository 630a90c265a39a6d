//! The report's charts, drawn by `plotters` into SVG strings. Text is left to the browser's own
//! fonts (plotters is built without `ttf`, so it lays labels out by an estimate and reads no
//! font file); tick values are round (plotters picks 1, 2 or 5 times a power of ten) and are
//! printed with at most three decimals.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The size of every chart, in pixels.
const SIZE: (u32, u32) = (720, 380);
/// At most this many tick labels on an axis.
const X_LABELS: usize = 8;
const Y_LABELS: usize = 6;
const FONT: &str = "sans-serif";

/// One line (or set of points) of a chart.
pub(super) struct Line {
    pub(super) name: String,
    pub(super) colour: RGBColor,
    pub(super) points: Vec<(f64, f64)>,
    pub(super) dashed: bool,
    /// Draw a dot at each point (a few measured points rather than a trace).
    pub(super) dots: bool,
    /// Points drawn as a cross instead (e.g. the ramp step the bridge failed).
    pub(super) crosses: Vec<(f64, f64)>,
}

impl Line {
    pub(super) fn new(name: impl Into<String>, colour: RGBColor, points: Vec<(f64, f64)>) -> Line {
        Line {
            name: name.into(),
            colour,
            points,
            dashed: false,
            dots: false,
            crosses: Vec::new(),
        }
    }
}

/// A chart of lines against two numeric axes, starting at zero.
pub(super) struct LineChart<'a> {
    pub(super) title: &'a str,
    pub(super) x_label: &'a str,
    pub(super) y_label: &'a str,
    pub(super) lines: Vec<Line>,
    /// Fixed upper ends of the axes (otherwise a round value above the data).
    pub(super) x_max: Option<f64>,
    pub(super) y_max: Option<f64>,
    /// Lines against a second y axis on the right (e.g. participants over time).
    pub(super) right: Option<(&'a str, Vec<Line>)>,
    pub(super) legend: SeriesLabelPosition,
}

/// One bar of a bar chart: the x label under it, its series (colour and legend), its height
/// and the text written above it.
pub(super) struct Bar {
    pub(super) label: String,
    pub(super) series: String,
    pub(super) colour: RGBColor,
    pub(super) value: f64,
    pub(super) note: String,
}

/// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is at least
/// `v` (1 for nothing): an axis end near the data, whose ticks are still round.
pub(super) fn round_up(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let scale = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * scale)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * scale)
}

/// Decimals enough to tell apart ticks on an axis `span` long with at most `labels` labels
/// (plotters' step is never below span / labels), and never more than three.
fn decimals(span: f64, labels: usize) -> usize {
    let step = span / labels.max(1) as f64;
    if !step.is_finite() || step <= 0.0 {
        return 0;
    }
    (-step.log10()).ceil().clamp(0.0, 3.0) as usize
}

/// A tick value: `decimals` at most, trailing zeros dropped ("0.5", "1", "250").
pub(super) fn tick(v: f64, decimals: usize) -> String {
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    if s == "-0" { "0".to_owned() } else { s }
}

/// Room for the y tick labels and, left of them, the axis label (so neither covers the other).
fn label_area(widest: usize) -> u32 {
    (30 + 8 * widest as u32).max(48)
}

fn widest_tick(max: f64, decimals: usize) -> usize {
    // The widest label is the top one or, for small values, one with all the decimals.
    tick(max, decimals)
        .len()
        .max(tick(max / 3.0, decimals).len())
}

fn render(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn max_of(lines: &[Line], f: impl Fn(&(f64, f64)) -> f64) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.points.iter().chain(&l.crosses))
        .map(f)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
}

pub(super) fn line_chart(c: &LineChart<'_>) -> Result<String, String> {
    // A little room on the right, so that a mark on the last point is not cut in half.
    let x_max = c
        .x_max
        .unwrap_or_else(|| round_up(max_of(&c.lines, |p| p.0) * 1.03));
    let y_max = c
        .y_max
        .unwrap_or_else(|| round_up(max_of(&c.lines, |p| p.1) * 1.05));
    let (xd, yd) = (decimals(x_max, X_LABELS), decimals(y_max, Y_LABELS));
    let right_max = c
        .right
        .as_ref()
        .map(|(_, lines)| round_up(max_of(lines, |p| p.1) * 1.05));
    let rd = right_max.map_or(0, |m| decimals(m, Y_LABELS));
    render(|root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(c.title, (FONT, 20))
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(label_area(widest_tick(y_max, yd)));
        if let Some(m) = right_max {
            builder.right_y_label_area_size(label_area(widest_tick(m, rd)));
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|x| e(&x))?
            .set_secondary_coord(0f64..x_max, 0f64..right_max.unwrap_or(1.0));
        chart
            .configure_mesh()
            .x_labels(X_LABELS)
            .y_labels(Y_LABELS)
            .x_label_formatter(&|v| tick(*v, xd))
            .y_label_formatter(&|v| tick(*v, yd))
            .x_desc(c.x_label)
            .y_desc(c.y_label)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(|x| e(&x))?;
        for l in &c.lines {
            let style = l.colour.stroke_width(2);
            let points = l.points.iter().copied();
            let drawn = if l.dashed {
                chart.draw_series(DashedLineSeries::new(points, 7, 4, style))
            } else {
                chart.draw_series(LineSeries::new(points, style))
            }
            .map_err(|x| e(&x))?;
            // A dashed line's legend is two strokes with a gap.
            let gap = if l.dashed { 4 } else { 0 };
            drawn.label(l.name.clone()).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (8, 0)], style)
                    + PathElement::new(vec![(8 + gap, 0), (20, 0)], style)
            });
            if l.dots {
                chart
                    .draw_series(
                        l.points
                            .iter()
                            .map(|p| Circle::new(*p, 4, l.colour.filled())),
                    )
                    .map_err(|x| e(&x))?;
            }
            chart
                .draw_series(
                    l.crosses
                        .iter()
                        .map(|p| Cross::new(*p, 6, l.colour.stroke_width(2))),
                )
                .map_err(|x| e(&x))?;
        }
        if let Some((label, lines)) = &c.right {
            chart
                .configure_secondary_axes()
                .y_labels(Y_LABELS)
                .y_label_formatter(&|v| tick(*v, rd))
                .y_desc(*label)
                .axis_desc_style((FONT, 16))
                .label_style((FONT, 14))
                .draw()
                .map_err(|x| e(&x))?;
            for l in lines {
                let style = l.colour.stroke_width(1);
                chart
                    .draw_secondary_series(DashedLineSeries::new(
                        l.points.iter().copied(),
                        3,
                        3,
                        style,
                    ))
                    .map_err(|x| e(&x))?
                    .label(l.name.clone())
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (4, 0)], style)
                            + PathElement::new(vec![(8, 0), (12, 0)], style)
                            + PathElement::new(vec![(16, 0), (20, 0)], style)
                    });
            }
        }
        chart
            .configure_series_labels()
            .position(c.legend.clone())
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 14))
            .draw()
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

/// Bars side by side, one colour (and legend entry) per series.
pub(super) fn bar_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    bars: &[Bar],
) -> Result<String, String> {
    // Headroom above the tallest bar for its note and the legend.
    let y_max = round_up(bars.iter().map(|b| b.value).fold(0.0, f64::max) * 1.35);
    let yd = decimals(y_max, Y_LABELS);
    let n = bars.len().max(1) as i32;
    render(|root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 20))
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(label_area(widest_tick(y_max, yd)))
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..y_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() + 1)
            .y_labels(Y_LABELS)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| bars.get(i))
                    .map_or(String::new(), |b| b.label.clone()),
                _ => String::new(),
            })
            .y_label_formatter(&|v| tick(*v, yd))
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|x| e(&x))?;
        let mut legend_done: Vec<&str> = Vec::new();
        for (i, b) in (0..n).zip(bars) {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.value),
                ],
                b.colour.filled(),
            );
            // A gap between neighbours, and no bar wider than ~120 px. (An integer range is
            // inclusive: 0..n - 1 is n bars.)
            let side = ((SIZE.0 as i32 - 120) / n - 120).max(24) / 2;
            bar.set_margin(0, 0, side as u32, side as u32);
            let drawn = chart.draw_series(std::iter::once(bar)).map_err(|x| e(&x))?;
            if !legend_done.contains(&b.series.as_str()) {
                legend_done.push(&b.series);
                let colour = b.colour;
                drawn.label(b.series.clone()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled())
                });
            }
            let style =
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(std::iter::once(Text::new(
                    b.note.clone(),
                    (SegmentValue::CenterOf(i), b.value + y_max * 0.01),
                    style,
                )))
                .map_err(|x| e(&x))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 14))
            .draw()
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_short() {
        assert_eq!(round_up(41.749), 50.0);
        assert_eq!(round_up(0.437), 0.5);
        assert_eq!(round_up(1.0), 1.0);
        assert_eq!(round_up(2.1), 2.5);
        assert_eq!(round_up(28.9), 30.0);
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(tick(0.30000000000000004, 1), "0.3");
        assert_eq!(tick(1.0, 1), "1");
        assert_eq!(tick(250.0, 0), "250");
        assert_eq!(tick(-0.0001, 2), "0");
        assert_eq!(decimals(1.0, 6), 1);
        assert_eq!(decimals(50.0, 6), 0);
        assert_eq!(decimals(0.001, 6), 3);
    }
}
