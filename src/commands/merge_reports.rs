//! `voyc-import merge-reports`: the reports of the shards of one manifest, joined into one
//! report in manifest order, with every row that does not add up named.

use anyhow::Context as _;

use crate::Status;
use crate::human;
use crate::manifest::{Manifest, Unreadable};
use crate::merge::merge;
use crate::report::{Counts, ReportWriter, read_report};
use crate::settings::MergeSettings;

/// How many rows of each kind of problem are named one by one before the rest are counted.
const NAMED: usize = 20;

pub fn command(settings: &MergeSettings) -> anyhow::Result<Status> {
    let mut reports = Vec::with_capacity(settings.reports.len());
    for path in &settings.reports {
        reports.push((path.clone(), read_report(path)?));
    }
    let manifest_lines = match &settings.manifest {
        Some((path, format)) => Some(row_lines(path, *format)?),
        None => None,
    };
    let merged = merge(reports, manifest_lines.as_deref());

    let mut writer = ReportWriter::create(&settings.out)?;
    for (seq, row) in merged.rows.iter().cloned().enumerate() {
        writer.push(seq as u64, row)?;
    }
    let counts = writer.finish().map_err(|unwritten| unwritten.error)?;

    let mut problems = Vec::new();
    let name = |what: &str, n: usize, lines: &mut dyn Iterator<Item = String>| {
        for line in lines.take(NAMED) {
            eprintln!("{line}");
        }
        if n > NAMED {
            eprintln!("... and {} more {what}", human::count((n - NAMED) as u64));
        }
    };
    if !merged.repeated.is_empty() {
        name(
            "repeated rows",
            merged.repeated.len(),
            &mut merged.repeated.iter().map(|r| {
                let reports: Vec<String> =
                    r.reports.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "line {} ({}): in {} reports: {}; the first is kept",
                    r.line,
                    human::one_line(&r.file),
                    r.reports.len(),
                    reports.join(", ")
                )
            }),
        );
        problems.push(format!(
            "{} repeated",
            human::count(merged.repeated.len() as u64)
        ));
    }
    if let Some((manifest, _)) = &settings.manifest {
        let shown = manifest.display();
        if !merged.missing.is_empty() {
            name(
                "missing rows",
                merged.missing.len(),
                &mut merged
                    .missing
                    .iter()
                    .map(|line| format!("{shown}:{line}: this row is in no report")),
            );
            problems.push(format!(
                "{} missing",
                human::count(merged.missing.len() as u64)
            ));
        }
        if !merged.unknown.is_empty() {
            name(
                "rows not in the manifest",
                merged.unknown.len(),
                &mut merged.unknown.iter().map(|(line, file)| {
                    format!(
                        "line {line} ({}): no row of {shown} starts on this line",
                        human::one_line(file)
                    )
                }),
            );
            problems.push(format!(
                "{} not in the manifest",
                human::count(merged.unknown.len() as u64)
            ));
        }
    }
    let mut summary = format!(
        "merged {} into {}: {}",
        human::count_of(settings.reports.len() as u64, "report", "reports"),
        settings.out.display(),
        statuses(&counts)
    );
    if !problems.is_empty() {
        summary.push_str(&format!("; {}", problems.join(", ")));
    }
    eprintln!("{summary}");
    Ok(if merged.is_complete() && counts.all_uploaded() {
        Status::Success
    } else {
        Status::Partial
    })
}

/// `5 rows: 4 uploaded, 1 failed`.
fn statuses(counts: &Counts) -> String {
    let parts: Vec<String> = [
        (counts.uploaded, "uploaded"),
        (counts.already_uploaded, "already uploaded"),
        (counts.failed, "failed"),
        (counts.invalid, "invalid"),
        (counts.not_attempted, "not attempted"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, label)| format!("{} {label}", human::count(n)))
    .collect();
    let rows = human::count_of(counts.total(), "row", "rows");
    match parts.is_empty() {
        true => rows,
        false => format!("{rows}: {}", parts.join(", ")),
    }
}

/// The lines the manifest's rows start on, as a report numbers them (blank lines skipped).
fn row_lines(path: &std::path::Path, format: crate::manifest::Format) -> anyhow::Result<Vec<u64>> {
    let cannot = || format!("cannot read the manifest {}", path.display());
    let mut manifest = match Manifest::open(path, format).with_context(cannot)? {
        Ok(manifest) => manifest,
        Err(Unreadable::Empty) => return Ok(Vec::new()),
        Err(Unreadable::Encoding(name)) => anyhow::bail!(
            "the manifest {} is not UTF-8 text: it looks like {name}",
            path.display()
        ),
    };
    let mut lines = Vec::new();
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let more = manifest.read_rows(4096, &mut batch).with_context(cannot)?;
        lines.extend(batch.iter().map(|row| row.line));
        if !more {
            break;
        }
    }
    Ok(lines)
}
