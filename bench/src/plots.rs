//! PNG plots of a benchmark's figures, one colour per operator: a histogram of create-to-id
//! latency (an operator's repeats pooled), and the AiApps with an id over time (a line per
//! repeat).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::Arrival;
use crate::figures::{Figures, Summary};

/// The font every label is drawn in: plotters' own text rendering, no fontconfig.
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";
/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (1280, 720);
/// About this many histogram buckets from 0 to the slowest AiApp.
const BUCKETS: f64 = 40.0;
/// Tableau 10: distinct colours for the operators, cycled beyond ten.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Writes `create-to-id-histogram.png` and `submitted-over-time.png` into `folder`, and
/// returns their paths.
pub fn write_plots(summary: &Summary, folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    load_font()?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let histogram = folder.join("create-to-id-histogram.png");
    create_to_id_histogram(summary, &histogram)
        .with_context(|| format!("plotting {}", histogram.display()))?;
    let over_time = folder.join("submitted-over-time.png");
    submitted_over_time(summary, &over_time)
        .with_context(|| format!("plotting {}", over_time.display()))?;
    Ok(vec![histogram, over_time])
}

/// Registers DejaVu Sans with plotters, once per process.
fn load_font() -> anyhow::Result<()> {
    static LOADED: Mutex<bool> = Mutex::new(false);
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *loaded {
        return Ok(());
    }
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(read_font(Path::new(FONT_PATH))?.into_boxed_slice());
    register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT_PATH} is not a font plotters can read"))?;
    *loaded = true;
    Ok(())
}

fn read_font(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading the plots' font {}: install it with `apt-get install fonts-dejavu-core`",
            path.display()
        )
    })
}

/// "300 AiApps, API latency 0 ms, burst arrival": what every plot's title names.
fn setting(summary: &Summary) -> String {
    let arrival = match summary.arrival {
        Arrival::Burst => "burst arrival".to_owned(),
        Arrival::Rate(n) => format!("arrival {n}/s"),
    };
    format!(
        "{} AiApps, API latency {} ms, {arrival}",
        summary.aiapps, summary.api_latency_ms
    )
}

fn colour(operator: usize) -> RGBColor {
    COLOURS[operator % COLOURS.len()]
}

/// Each operator of the summary with its colour and its repeats.
fn by_operator(summary: &Summary) -> Vec<(&str, RGBColor, Vec<&Figures>)> {
    summary
        .operators
        .iter()
        .enumerate()
        .map(|(i, operator)| {
            let repeats = summary
                .repeats
                .iter()
                .filter(|f| f.operator == *operator)
                .collect();
            (operator.as_str(), colour(i), repeats)
        })
        .collect()
}

fn finite(values: &[f64]) -> impl Iterator<Item = f64> + '_ {
    values.iter().copied().filter(|v| v.is_finite())
}

/// A round bucket width (1, 2, 2.5 or 5 times a power of ten) giving about `BUCKETS`
/// buckets from 0 to `max`; 1 when there is nothing above 0.
fn bucket_width(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let raw = max / BUCKETS;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|step| step * power >= raw)
        .unwrap_or(10.0);
    step * power
}

/// How many of `values` fall in each of `buckets` buckets of `width` from 0; values past
/// the last bucket count in it, values below 0 in the first.
fn bucket_counts(values: &[f64], width: f64, buckets: usize) -> Vec<u32> {
    let mut counts = vec![0; buckets];
    for value in finite(values) {
        let index = (value / width).floor().max(0.0) as usize;
        counts[index.min(buckets - 1)] += 1;
    }
    counts
}

fn canvas(path: &Path) -> DrawingArea<BitMapBackend<'_>, Shift> {
    BitMapBackend::new(path, SIZE).into_drawing_area()
}

fn create_to_id_histogram(summary: &Summary, path: &Path) -> anyhow::Result<()> {
    let operators = by_operator(summary);
    let max = summary
        .repeats
        .iter()
        .flat_map(|f| finite(&f.create_to_id))
        .fold(0.0, f64::max);
    let width = bucket_width(max);
    let buckets = ((max / width).floor() as usize + 1).max(1);
    // An operator's repeats pooled, as AiApps per repeat, so that operators with more
    // repeats do not stand taller.
    let counts: Vec<Vec<f64>> = operators
        .iter()
        .map(|(_, _, repeats)| {
            let pooled: Vec<f64> = repeats
                .iter()
                .flat_map(|f| f.create_to_id.iter().copied())
                .collect();
            let per = repeats.len().max(1) as f64;
            bucket_counts(&pooled, width, buckets)
                .into_iter()
                .map(|n| f64::from(n) / per)
                .collect()
        })
        .collect();
    let highest = counts.iter().flatten().copied().fold(0.0, f64::max);
    let x_end = buckets as f64 * width;

    let root = canvas(path);
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Create to status.id: {}", setting(summary)),
            (FONT, 28),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(75)
        // Headroom above the tallest bar keeps the legend off the bars.
        .build_cartesian_2d(0.0..x_end, 0.0..(highest * 1.4).max(1.0) + 1.0)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(4)
        .x_desc(format!(
            "seconds from create to status.id (buckets of {} s)",
            (width * 1e6).round() / 1e6
        ))
        .y_desc("AiApps (per repeat)")
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 16))
        .draw()?;

    // Side by side within each bucket: operator o takes the o-th slice of it.
    let slice = width / operators.len().max(1) as f64;
    for (o, ((operator, colour, repeats), counts)) in operators.iter().zip(&counts).enumerate() {
        let colour = *colour;
        let bars = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0.0)
            .map(|(b, n)| {
                let left = b as f64 * width + o as f64 * slice;
                Rectangle::new([(left, 0.0), (left + slice, *n)], colour.filled())
            });
        chart
            .draw_series(bars)?
            .label(match repeats.len() {
                1 => format!("{operator} (1 repeat)"),
                n => format!("{operator} ({n} repeats pooled)"),
            })
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
    }

    // p50 and p99 of each operator's median repeat (by p50), dashed in its colour.
    let top = chart.y_range().end;
    for (operator, colour, repeats) in &operators {
        let Some((r, figures)) = median_repeat(repeats) else {
            continue;
        };
        let colour = *colour;
        let which = if repeats.len() == 1 {
            String::new()
        } else {
            format!(" (repeat {}, the median)", r + 1)
        };
        for (q, name, dash) in [(0.5, "p50", 12u32), (0.99, "p99", 4)] {
            let at = figures.percentile(q);
            chart
                .draw_series(DashedLineSeries::new(
                    [(at, 0.0), (at, top)],
                    dash,
                    4,
                    colour.stroke_width(2),
                ))?
                .label(format!("{operator} {name}{which}: {at:.2} s"))
                .legend(move |(x, y)| {
                    // Three dashes as in the plot, shortened to fit the legend.
                    let (long, period) = if dash > 4 { (6, 9) } else { (2, 5) };
                    let stroke = |from: i32| {
                        PathElement::new([(from, 0), (from + long, 0)], colour.stroke_width(2))
                    };
                    EmptyElement::at((x, y)) + stroke(0) + stroke(period) + stroke(2 * period)
                });
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// The repeat whose create-to-id p50 is the median of `repeats`' (the lower of the two
/// middle ones when even), with its index among them; `None` when none has a latency.
fn median_repeat<'a>(repeats: &[&'a Figures]) -> Option<(usize, &'a Figures)> {
    let mut measured: Vec<(usize, &Figures)> = repeats
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, f)| !f.create_to_id.is_empty())
        .collect();
    measured.sort_by(|a, b| a.1.percentile(0.5).total_cmp(&b.1.percentile(0.5)));
    measured.get((measured.len().max(1) - 1) / 2).copied()
}

fn submitted_over_time(summary: &Summary, path: &Path) -> anyhow::Result<()> {
    let repeats = &summary.repeats;
    let last = repeats
        .iter()
        .flat_map(|f| finite(&f.id_at_s))
        .fold(0.0, f64::max);
    let x_end = if last > 0.0 { last * 1.03 } else { 1.0 };
    let most = repeats
        .iter()
        .map(|f| f.id_at_s.len())
        .chain([summary.aiapps])
        .max()
        .unwrap_or(0) as u32;

    let root = canvas(path);
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("AiApps with status.id over time: {}", setting(summary)),
            (FONT, 28),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d(0.0..x_end, 0u32..(most + most / 20).max(1) + 1)?;
    chart
        .configure_mesh()
        .max_light_lines(4)
        .x_desc("seconds since the first create")
        .y_desc("AiApps with status.id (cumulative)")
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 16))
        .draw()?;

    for (operator, colour, repeats) in by_operator(summary) {
        let mut rates: Vec<f64> = repeats.iter().map(|f| f.submitted_rate).collect();
        rates.sort_by(f64::total_cmp);
        let median = crate::figures::percentile(&rates, 0.5);
        for (r, figures) in repeats.iter().enumerate() {
            // A step up by one at each AiApp's id.
            let mut steps = vec![(0.0, 0u32)];
            for (n, at) in finite(&figures.id_at_s).enumerate() {
                steps.push((at, n as u32));
                steps.push((at, n as u32 + 1));
            }
            let series = chart.draw_series(LineSeries::new(steps, colour.stroke_width(2)))?;
            // One legend entry per operator, on its first repeat.
            if r == 0 {
                let of = if repeats.len() > 1 {
                    format!(" (median of {})", repeats.len())
                } else {
                    String::new()
                };
                series
                    .label(format!("{operator}: {median:.1} submitted/s{of}"))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3))
                    });
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .margin(15)
        .label_font((FONT, 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn summary(repeats: Vec<Figures>) -> Summary {
        let mut operators: Vec<String> = Vec::new();
        for f in &repeats {
            if !operators.contains(&f.operator) {
                operators.push(f.operator.clone());
            }
        }
        Summary {
            aiapps: 300,
            api_latency_ms: 25,
            running_ms: 3_000,
            arrival: Arrival::Burst,
            operator_env: Vec::new(),
            machine: "test".to_owned(),
            operators,
            repeats,
            spread: BTreeMap::new(),
        }
    }

    /// A repeat of `n` AiApps created at `rate` per second, each taking 0.2 s plus an
    /// exponential tail of mean `tail` seconds to its id.
    fn repeat(n: usize, rate: f64, tail: f64) -> Figures {
        let mut create_to_id: Vec<f64> = (0..n)
            .map(|i| 0.2 + -tail * (1.0 - (i as f64 + 0.5) / n as f64).ln())
            .collect();
        // Unsort, so the i-th created is not the i-th fastest.
        let mut latencies = create_to_id.clone();
        latencies.rotate_left(n / 3);
        let mut id_at_s: Vec<f64> = latencies
            .iter()
            .enumerate()
            .map(|(i, latency)| i as f64 / rate + latency)
            .collect();
        create_to_id.sort_by(f64::total_cmp);
        id_at_s.sort_by(f64::total_cmp);
        let last = id_at_s.last().copied().unwrap_or(1.0);
        Figures {
            operator: "dataforest".to_owned(),
            aiapps: n,
            create_rate: rate,
            submitted_rate: n as f64 / last,
            create_to_id,
            id_at_s,
            ..Figures::default()
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!(
            "dataforest-bench-{name}-{}-{nanos}",
            std::process::id()
        ))
    }

    /// Width and height from a PNG's IHDR chunk, after checking the signature.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(
            bytes.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']),
            "not a PNG"
        );
        assert_eq!(&bytes[12..16], b"IHDR");
        let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        (word(16), word(20))
    }

    fn assert_plots(summary: &Summary, name: &str) {
        let folder = scratch(name);
        let written = write_plots(summary, &folder);
        let result = std::panic::catch_unwind(|| {
            let written = written.expect("plots written");
            let names: Vec<_> = written
                .iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                names,
                ["create-to-id-histogram.png", "submitted-over-time.png"]
            );
            for path in &written {
                assert_eq!(path.parent(), Some(folder.as_path()));
                let bytes = std::fs::read(path).expect("plot exists");
                assert_eq!(png_size(&bytes), SIZE, "{}", path.display());
            }
        });
        let _ = std::fs::remove_dir_all(&folder);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn plots_are_pngs_of_every_repeat() {
        let summary = summary(vec![
            repeat(300, 150.0, 0.6),
            repeat(300, 140.0, 0.8),
            repeat(300, 160.0, 0.5),
        ]);
        assert_plots(&summary, "plots");
    }

    #[test]
    fn plots_show_operators_together() {
        let baseline = |rate, tail| Figures {
            operator: "controller-runtime".to_owned(),
            ..repeat(300, rate, tail)
        };
        let summary = summary(vec![
            repeat(300, 150.0, 0.6),
            baseline(140.0, 2.0),
            repeat(300, 160.0, 0.5),
            baseline(130.0, 2.5),
        ]);
        assert_eq!(summary.operators, ["dataforest", "controller-runtime"]);
        let operators = by_operator(&summary);
        assert_eq!(operators[1].2.len(), 2);
        assert_ne!(operators[0].1, operators[1].1, "one colour per operator");
        assert_plots(&summary, "plots-operators");
    }

    #[test]
    fn plots_draw_without_figures() {
        let one = Figures {
            create_to_id: vec![0.0],
            id_at_s: vec![0.0],
            ..Figures::default()
        };
        let mut summary = summary(vec![Figures::default(), one]);
        summary.arrival = Arrival::Rate(50);
        assert_plots(&summary, "plots-empty");
        summary.repeats.clear();
        assert_plots(&summary, "plots-none");
    }

    #[test]
    fn a_missing_font_says_what_to_install() {
        let error = read_font(Path::new("/nonexistent/DejaVuSans.ttf")).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("/nonexistent/DejaVuSans.ttf"), "{message}");
        assert!(message.contains("fonts-dejavu-core"), "{message}");
    }

    #[test]
    fn buckets_are_round_and_about_forty() {
        assert_eq!(bucket_width(4.0), 0.1);
        assert_eq!(bucket_width(10.0), 0.25);
        assert_eq!(bucket_width(0.0), 1.0);
        assert_eq!(bucket_width(f64::NAN), 1.0);
        for max in [0.013, 0.9, 3.7, 42.0, 1234.5] {
            let buckets = max / bucket_width(max);
            assert!((16.0..=40.0).contains(&buckets), "{max}: {buckets}");
        }
        assert_eq!(
            bucket_counts(&[0.0, 0.05, 0.1, 9.0, -1.0], 0.1, 3),
            [3, 1, 1]
        );
    }
}
