//! Alert hygiene: turns the rules' findings into alert episodes and one email per
//! watch and evaluation.
//!
//! - A condition (same watch, same condition key) with an open alert is not announced
//!   again while it persists; a reminder goes out at most every `reminder_hours`.
//! - When it clears, the alert is resolved and one "resolved" line goes out. A rule
//!   clears an open condition only once its value is clearly back (the resolve margins
//!   in `rules`), so a value hovering at a threshold keeps its alert open.
//! - An alert acknowledged on the dashboard gets no more reminders (a worse severity is
//!   still announced); a snoozed one stays quiet until its snooze ends.
//! - After a notification (opened, reminder or resolved), the same condition is not
//!   notified again within `cooldown_hours`, even if it cleared and came back in
//!   between (flapping): it is recorded and announced once the cooldown is over.
//! - A severity higher than the highest already announced (for the open alert or, inside
//!   the cooldown, for the episode before it) is announced at once; one that falls back
//!   and rises again is not, so a value hovering around a threshold sends one email.
//! - Each notice says what the news is (NEW, WORSE, BACK, REMINDER, RESOLVED), so the
//!   reader can tell a new problem from one already known.
//! - Everything that changes in one evaluation of a watch goes out as one email, queued
//!   in the same transaction as the alert rows (see the store's `apply_alert_changes`).

use std::fmt::Write as _;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use html_escape::encode_text as esc;

use crate::clock;

use crate::config::{AlertSettings, Config};
use crate::store::{
    AlertChange, AlertRow, ApplyOutcome, Evidence, LastNotice, NewAlert, NewEmail, Store,
};

/// What one evaluation of a watch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub opened: usize,
    pub reminded: usize,
    pub resolved: usize,
    /// Open alerts that persist without a reminder yet.
    pub persisting: usize,
    pub email_id: Option<i64>,
    /// Another worker evaluated the same watch at the same moment; this one stood down.
    pub conflict: bool,
}

/// What a notice tells the recipients about an open condition, as the word that leads
/// its line and the subject, so that a reader knows at once whether it is news.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// First announcement of the condition.
    New,
    /// Higher severity than the highest announced (`was`).
    Worse { was: String },
    /// The recipients' last email on this condition said it was resolved (at that time).
    Back { resolved_at: DateTime<Utc> },
    /// Still open since `open_since`; nothing new.
    Reminder { open_since: DateTime<Utc> },
}

impl NoticeKind {
    fn word(&self) -> &'static str {
        match self {
            NoticeKind::New => "NEW",
            NoticeKind::Worse { .. } => "WORSE",
            NoticeKind::Back { .. } => "BACK",
            NoticeKind::Reminder { .. } => "REMINDER",
        }
    }

    /// Which notice leads the subject among those of the same severity.
    fn urgency(&self) -> u8 {
        match self {
            NoticeKind::Worse { .. } => 3,
            NoticeKind::New => 2,
            NoticeKind::Back { .. } => 1,
            NoticeKind::Reminder { .. } => 0,
        }
    }

    /// What follows the title in the body, its times on the watch's clock (`tz`).
    fn detail(&self, tz: Tz, now: DateTime<Utc>) -> String {
        match self {
            NoticeKind::New => String::new(),
            NoticeKind::Worse { was } => format!(" (was {})", was.to_uppercase()),
            NoticeKind::Back { resolved_at } => format!(
                " (back after it was resolved on {})",
                clock::spoken(*resolved_at, tz, now)
            ),
            NoticeKind::Reminder { open_since } => {
                format!(
                    " (still open since {})",
                    clock::spoken(*open_since, tz, now)
                )
            }
        }
    }
}

/// One line of the email.
#[derive(Debug, Clone)]
enum Notice<'a> {
    Open(&'a NewAlert, NoticeKind),
    /// A cleared alert, with what holds now (see `rules::Evaluation::cleared`).
    Resolved(&'a AlertRow, String),
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "red" => 2,
        "amber" => 1,
        _ => 0,
    }
}

/// Decides the changes from the open alerts and the findings.
pub async fn plan(
    store: &Store,
    watch_id: i64,
    settings: &AlertSettings,
    open: &[AlertRow],
    findings: &[NewAlert],
    now: DateTime<Utc>,
) -> Result<Vec<(AlertChange, Option<NoticeKind>)>> {
    let cooldown = Duration::hours(i64::from(settings.cooldown_hours));
    let reminder = Duration::hours(i64::from(settings.reminder_hours.max(24)));
    let mut changes = Vec::new();
    for f in findings {
        match open.iter().find(|a| a.condition_key == f.condition_key) {
            Some(a) => {
                let since = a.last_notified_at.unwrap_or(a.opened_at);
                // What the recipients were told about this condition: the highest
                // severity announced for this alert or, for one opened quietly inside the
                // cooldown, for the episode announced before it.
                let last = match a.last_notified_at {
                    Some(_) => None,
                    None => store.last_notice(watch_id, &f.condition_key).await?,
                };
                let announced = match &a.notified_severity {
                    Some(s) => Some(s.clone()),
                    None => last
                        .as_ref()
                        .filter(|n| now - n.at < cooldown)
                        .and_then(|n| n.severity.clone()),
                };
                // Worse than ever announced: say so now rather than wait for the
                // reminder. Against the highest announced, not the stored severity
                // (which follows the condition down), so a value hovering around a
                // threshold does not announce the same escalation at every crossing.
                let escalated = announced
                    .as_deref()
                    .is_some_and(|s| severity_rank(&f.severity) > severity_rank(s));
                let unannounced = a.last_notified_at.is_none()
                    && last.as_ref().is_none_or(|n| now - n.at >= cooldown);
                let snoozed = a.snoozed_until.is_some_and(|t| t > now);
                let acknowledged = a.acknowledged_at.is_some();
                // Acknowledged: someone is on it, so no more reminders (a worse severity
                // still goes out); snoozed: nothing until the snooze ends.
                let remind = !snoozed
                    && ((now - since >= reminder && !acknowledged) || escalated || unannounced);
                // (`last` is only looked up for an alert not yet announced itself.)
                let kind = remind.then(|| match (&announced, &last) {
                    // Back after a resolved notice, whatever its severity now: the
                    // recipients were last told it was over.
                    (
                        _,
                        Some(LastNotice {
                            resolution_announced: Some(resolved_at),
                            ..
                        }),
                    ) => NoticeKind::Back {
                        resolved_at: *resolved_at,
                    },
                    (Some(was), _) if escalated => NoticeKind::Worse { was: was.clone() },
                    (_, Some(_)) => NoticeKind::Reminder {
                        open_since: a.opened_at,
                    },
                    _ if a.last_notified_at.is_none() => NoticeKind::New,
                    _ => NoticeKind::Reminder {
                        open_since: a.opened_at,
                    },
                });
                let notified_severity = if remind {
                    Some(
                        match &a.notified_severity {
                            Some(s) if severity_rank(s) > severity_rank(&f.severity) => s,
                            _ => &f.severity,
                        }
                        .clone(),
                    )
                } else {
                    a.notified_severity.clone()
                };
                changes.push((
                    AlertChange::Persist {
                        id: a.id,
                        alert: f.clone(),
                        remind,
                        last_notified: a.last_notified_at,
                        notified_severity,
                    },
                    kind,
                ));
            }
            None => {
                let last = store.last_notice(watch_id, &f.condition_key).await?;
                // Inside the cooldown a condition that comes back is opened quietly,
                // unless it comes back worse than anything the recipients were told.
                let worse_than_told = |n: &LastNotice| {
                    n.severity
                        .as_deref()
                        .is_some_and(|s| severity_rank(&f.severity) > severity_rank(s))
                };
                let notify = last
                    .as_ref()
                    .is_none_or(|n| now - n.at >= cooldown || worse_than_told(n));
                let kind = notify.then(|| match &last {
                    Some(LastNotice {
                        resolution_announced: Some(resolved_at),
                        ..
                    }) => NoticeKind::Back {
                        resolved_at: *resolved_at,
                    },
                    Some(n) if now - n.at < cooldown => NoticeKind::Worse {
                        was: n.severity.clone().unwrap_or_default(),
                    },
                    _ => NoticeKind::New,
                });
                changes.push((
                    AlertChange::Open {
                        alert: f.clone(),
                        notify,
                    },
                    kind,
                ));
            }
        }
    }
    for a in open {
        if !findings.iter().any(|f| f.condition_key == a.condition_key) {
            // A resolution is worth a line only if the opening was announced. A severe
            // mention leaves the list when answered or when it ages out of the window:
            // neither needs an email of its own.
            let announce = a.last_notified_at.is_some() && a.rule != "severe_mention";
            changes.push((
                AlertChange::Resolve {
                    id: a.id,
                    notify: announce,
                },
                None,
            ));
        }
    }
    Ok(changes)
}

/// Evaluates the rules of one watch as of `now`, records the alerts and queues the
/// email. Safe to run on several workers at once: at most one of them writes.
pub async fn check_watch(
    store: &Store,
    config: &Config,
    watch_name: &str,
    now: DateTime<Utc>,
) -> Result<CheckReport> {
    let watch = store
        .watch_by_name(watch_name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no watch named `{watch_name}`"))?;
    let wcfg = config
        .watch(watch_name)
        .ok_or_else(|| anyhow::anyhow!("watch `{watch_name}` is not in the configuration"))?;
    let settings = &wcfg.alerts;
    // The open alerts first: a condition with one clears only by its rule's margin.
    let open = store.open_alerts(watch.id).await?;
    let evaluation = crate::rules::Evaluation {
        store,
        watch_id: watch.id,
        settings,
        now,
        open: &open,
    };
    let findings = evaluation.findings().await?;
    let planned = plan(store, watch.id, settings, &open, &findings, now).await?;
    let mut report = CheckReport::default();
    let mut notices = Vec::new();
    for (change, kind) in &planned {
        match change {
            AlertChange::Open { alert, .. } => {
                report.opened += 1;
                if let Some(kind) = kind {
                    notices.push(Notice::Open(alert, kind.clone()));
                }
            }
            AlertChange::Persist { alert, .. } => match kind {
                Some(kind) => {
                    report.reminded += 1;
                    notices.push(Notice::Open(alert, kind.clone()));
                }
                None => report.persisting += 1,
            },
            AlertChange::Resolve { id, notify } => {
                report.resolved += 1;
                if *notify {
                    if let Some(a) = open.iter().find(|a| a.id == *id) {
                        notices.push(Notice::Resolved(a, evaluation.cleared(a).await?));
                    }
                }
            }
        }
    }
    let changes: Vec<AlertChange> = planned.iter().map(|(c, _)| c.clone()).collect();
    if changes.is_empty() {
        return Ok(report);
    }
    let recipients = &wcfg.recipients;
    let email = if notices.is_empty() || recipients.is_empty() {
        if !notices.is_empty() {
            tracing::warn!(watch = %watch_name, "alerts changed but the watch has no recipients");
        }
        None
    } else {
        let tz = config.watch_zone(watch_name);
        let (subject, text, html) = render(watch_name, &notices, tz, now);
        let message = crate::notify::compose(
            &config.email.from,
            recipients,
            &subject,
            &text,
            &html,
            Vec::new(),
        )?;
        Some((subject, message))
    };
    // The same evaluation content gives the same key: a retried evaluation cannot queue
    // the email twice even if its alert writes were somehow repeated.
    let dedup = format!(
        "alert:{}:{}:{}",
        watch.id,
        now.timestamp_millis(),
        notices.len()
    );
    let new_email = email.as_ref().map(|(subject, message)| NewEmail {
        kind: "alert",
        dedup_key: Some(&dedup),
        watch_id: Some(watch.id),
        recipients,
        subject,
        message,
    });
    match store
        .apply_alert_changes(watch.id, &changes, now, new_email.as_ref())
        .await?
    {
        ApplyOutcome::Applied { email_id } => report.email_id = email_id,
        ApplyOutcome::Conflict => {
            tracing::info!(watch = %watch_name, "another worker recorded these alerts first");
            return Ok(CheckReport {
                conflict: true,
                ..Default::default()
            });
        }
    }
    Ok(report)
}

fn colour(sev: &str) -> &'static str {
    match sev {
        "red" => "#c62828",
        "amber" => "#ef8f00",
        _ => "#2e7d32",
    }
}

fn stars(r: u8) -> String {
    "★".repeat(r as usize) + &"☆".repeat(5usize.saturating_sub(r as usize))
}

fn evidence_text(out: &mut String, e: &Evidence, tz: Tz) {
    let _ = write!(out, "    - {}", e.source);
    if let Some(r) = e.rating {
        let _ = write!(out, ", {r}/5");
    }
    if let Some(a) = &e.author {
        let _ = write!(out, ", {a}");
    }
    let _ = writeln!(
        out,
        ", {}: \"{}\"",
        clock::date(e.published_at, tz),
        e.excerpt
    );
    if let Some(u) = &e.url {
        let _ = writeln!(out, "      {u}");
    }
}

fn evidence_html(out: &mut String, e: &Evidence, tz: Tz) {
    let _ = write!(
        out,
        "<li style=\"margin:0 0 8px 0\"><span style=\"color:#555\">{}",
        esc(&e.source)
    );
    if let Some(r) = e.rating {
        let _ = write!(out, " <span style=\"color:#f5a623\">{}</span>", stars(r));
    }
    if let Some(a) = &e.author {
        let _ = write!(out, " · {}", esc(a));
    }
    let _ = write!(
        out,
        " · {}</span><br>“{}”",
        clock::date(e.published_at, tz),
        esc(&e.excerpt)
    );
    if let Some(u) = e
        .url
        .as_deref()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    {
        let _ = write!(
            out,
            " <a href=\"{}\" style=\"color:#1565c0\">open</a>",
            html_escape::encode_double_quoted_attribute(u)
        );
    }
    out.push_str("</li>");
}

/// Subject, plain text and HTML of an alert email, its times on the watch's clock (`tz`).
fn render(
    watch: &str,
    notices: &[Notice<'_>],
    tz: Tz,
    now: DateTime<Utc>,
) -> (String, String, String) {
    // The subject leads with the worst open notice (by severity, then worse before new
    // before back before reminder), or the first resolution when nothing is open.
    let lead = notices
        .iter()
        .filter_map(|n| match n {
            Notice::Open(a, kind) => Some((a, kind)),
            Notice::Resolved(..) => None,
        })
        .max_by_key(|(a, kind)| (severity_rank(&a.severity), kind.urgency()));
    let head = match lead {
        Some((a, kind)) => format!(
            "{}, {}: {}",
            a.severity.to_uppercase(),
            kind.word(),
            a.title
        ),
        None => notices
            .iter()
            .find_map(|n| match n {
                Notice::Resolved(_, holds) => Some(format!("RESOLVED: {holds}")),
                Notice::Open(..) => None,
            })
            .unwrap_or_default(),
    };
    let more = notices.len().saturating_sub(1);
    let subject = format!(
        "[zmot] {watch} {head}{}",
        if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        }
    );

    let as_of = clock::spoken(now, tz, now);
    let mut text = format!("{watch}: alerts as of {as_of}\n\n");
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>zmot alert</title></head>\
         <body style=\"margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#222;background:#f6f6f6\">\
         <table role=\"presentation\" width=\"100%\" style=\"max-width:640px;margin:0 auto;background:#fff;border-collapse:collapse\"><tr><td style=\"padding:16px\">",
    );
    let _ = write!(
        html,
        "<h1 style=\"font-size:18px;margin:0 0 12px 0\">{}: alerts</h1>\
         <div style=\"color:#666;margin:0 0 12px 0\">as of {}</div>",
        esc(watch),
        esc(&as_of)
    );
    for n in notices {
        let (tag, a_sev, title, summary, action, evidence, since) = match n {
            Notice::Open(a, kind) => (
                format!("{}, {}", kind.word(), a.severity.to_uppercase()),
                a.severity.as_str(),
                &a.title,
                &a.summary,
                &a.action,
                &a.evidence,
                kind.detail(tz, now),
            ),
            Notice::Resolved(a, holds) => (
                "RESOLVED".to_string(),
                "green",
                holds,
                &a.summary,
                &a.action,
                &a.evidence,
                String::new(),
            ),
        };
        let _ = writeln!(text, "[{tag}] {title}{since}");
        if let Notice::Resolved(a, _) = n {
            let _ = writeln!(text, "  Cleared. It was: {}\n", a.title);
        } else {
            let _ = writeln!(text, "  {summary}\n  What to do: {action}");
            if !evidence.is_empty() {
                let _ = writeln!(text, "  Evidence:");
                for e in evidence.iter() {
                    evidence_text(&mut text, e, tz);
                }
            }
            text.push('\n');
        }
        let _ = write!(
            html,
            "<div style=\"border-left:6px solid {c};padding:8px 12px;margin:0 0 16px 0;background:#fafafa\">\
             <div style=\"font-size:12px;font-weight:bold;color:{c}\">{tag}{since}</div>\
             <div style=\"font-size:16px;font-weight:bold;margin:4px 0\">{}</div>",
            esc(title),
            c = colour(a_sev),
            since = esc(&since),
        );
        if let Notice::Resolved(a, _) = n {
            let _ = write!(html, "<div>Cleared. It was: {}</div>", esc(&a.title));
        } else {
            let _ = write!(
                html,
                "<div style=\"margin:4px 0\">{}</div><div style=\"margin:4px 0\"><b>What to do:</b> {}</div>",
                esc(summary),
                esc(action)
            );
            if !evidence.is_empty() {
                html.push_str("<ul style=\"padding-left:18px;margin:8px 0\">");
                for e in evidence.iter() {
                    evidence_html(&mut html, e, tz);
                }
                html.push_str("</ul>");
            }
        }
        html.push_str("</div>");
    }
    text.push_str("-- \nzmot: you receive this because you are a recipient of this watch.\n");
    html.push_str(
        "<p style=\"font-size:12px;color:#777\">zmot: you receive this because you are a recipient of this watch.</p>\
         </td></tr></table></body></html>",
    );
    (subject, text, html)
}

/// `zmot alerts`: a one-line-per-alert table, each time on its watch's clock (`zone_of`)
/// marked with the zone, as the alerts of several watches may be on different clocks.
pub fn format_table(alerts: &[AlertRow], zone_of: impl Fn(&str) -> Tz) -> String {
    let mut out = String::new();
    if alerts.is_empty() {
        out.push_str("No open or recent alerts.\n");
        return out;
    }
    for a in alerts {
        let _ = writeln!(
            out,
            "{:<8} {:<6} {:<9} {:<22} {}",
            a.status,
            a.severity,
            a.watch,
            clock::minute_zoned(a.opened_at, zone_of(&a.watch)),
            a.title
        );
    }
    out
}
