//! Progress of a demo run: a bar on a terminal, a plain line every few seconds
//! otherwise (logs, CI), nothing in tests.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::thousands;

/// How often a plain progress line is written.
const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on standard error.
    Bar,
    /// A line on standard error every few seconds.
    Lines,
    Quiet,
}

impl ProgressMode {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

pub(crate) struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    total: u64,
    unit: &'static str,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// Counts `total` `unit`s (e.g. findings).
    pub fn new(mode: ProgressMode, total: u64, unit: &'static str) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::new(total);
            let template = format!(
                "{{spinner}} [{{elapsed_precise}}] [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit} \
                 ({{per_sec}}, ETA {{eta}}) {{msg}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            mode,
            bar,
            total,
            unit,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// `done` of the total so far, after `scans` scans.
    pub fn update(&self, done: u64, scans: u64) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(done);
                    bar.set_message(format!("{} scans", thousands(scans)));
                }
            }
            ProgressMode::Lines => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    self.line(done, scans);
                }
            }
        }
    }

    pub fn finish(&self, done: u64, scans: u64) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
            }
            ProgressMode::Lines => self.line(done, scans),
        }
    }

    fn line(&self, done: u64, scans: u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "demo: {}/{} {} ({:.0}%), {} scans, {:.0} s, {}/s",
            thousands(done),
            thousands(self.total),
            self.unit,
            100.0 * done as f64 / self.total.max(1) as f64,
            thousands(scans),
            seconds,
            thousands((done as f64 / seconds.max(1e-3)).round() as u64),
        );
    }
}
